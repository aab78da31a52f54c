"""The study's design as data: variant codes, backbones and paper names.

A variant code is ``exp_{B}_{C}{IEU}{IEN}``: backbone B in {0,1,2}, then three
0/1 flags for Basque corpus (C_EU), Basque instructions (I_EU) and English
instructions (I_EN).

Model size is a second axis: the study trained the 17 codes at 8B and one, ``exp_2_101``, at 70B (backbone 2 is
then Llama-3.1-70B-Instruct; the reference ran it as ``Latxa-Llama-3.1-70B-Instruct-exp_2_101``). A 70B variant is
written ``70b-exp_2_101`` (its :attr:`Variant.key`, used for registered model names) and its run/folder name is the
reference's (:attr:`Variant.run_name`); ``parse`` accepts all three spellings. The size usually comes from the study
profile (``leonardo-70b`` has ``model_size: 70b``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from latxa.errors import LatxaError

CODE_RE = re.compile(r"^exp_(?P<b>[0-9])_(?P<c>[01])(?P<ieu>[01])(?P<ien>[01])$")
SIZES = ("8b", "70b")
_70B_KEY_RE = re.compile(r"^70[bB]-(exp_.*)$")
RUN_NAME_70B = "Latxa-Llama-3.1-70B-Instruct-{code}"     # the reference's run (and served model) name
VALID_FORM = "a valid code looks like exp_B_CIJ with backbone B in 0/1/2 and three 0/1 flags, e.g. exp_2_101"


class VariantError(LatxaError, ValueError):
    """A variant code or paper name that does not follow the study's nomenclature."""


@dataclass(frozen=True)
class Backbone:
    index: int
    paper: str          # BASE_EN / BASE_EU / INST_EN
    hf_name: str        # production model name (never downloaded by tests)
    kind: str           # "base" | "instruct"
    language: str       # language the backbone was trained for
    description: str


BACKBONES: dict[int, Backbone] = {
    0: Backbone(0, "BASE_EN", "meta-llama/Llama-3.1-8B", "base", "en", "Llama 3.1 8B"),
    1: Backbone(1, "BASE_EU", "HiTZ/Latxa-Llama-3.1-8B", "base", "eu", "Latxa 3.1 8B (Basque continued pre-training)"),
    2: Backbone(2, "INST_EN", "meta-llama/Llama-3.1-8B-Instruct", "instruct", "en", "Llama 3.1 8B Instruct"),
}

#: Backbone 2 at 70B: the only 70B backbone of the study.
BACKBONE_70B = Backbone(2, "INST_EN", "meta-llama/Llama-3.1-70B-Instruct", "instruct", "en", "Llama 3.1 70B Instruct")

#: The 17 8B variants the study actually trained.
TRAINED_8B: tuple[str, ...] = tuple(
    f"exp_{b}_{flags}"
    for b, flag_list in (
        (0, ("010", "011", "101", "110", "111")),
        (1, ("001", "010", "011", "101", "110", "111")),
        (2, ("010", "011", "100", "101", "110", "111")),
    )
    for flags in flag_list
)
#: The one 70B variant the study trained (INS_EN,70B + C_EU + I_EN).
TRAINED_70B: tuple[str, ...] = ("exp_2_101",)

@dataclass(frozen=True)
class Variant:
    backbone: int
    corpus_eu: bool
    inst_eu: bool
    inst_en: bool
    size: str = "8b"

    @property
    def code(self) -> str:
        return f"exp_{self.backbone}_{int(self.corpus_eu)}{int(self.inst_eu)}{int(self.inst_en)}"

    @property
    def key(self) -> str:
        """The code plus the size when it is not 8B (``70b-exp_2_101``): registered model names, MLflow tags."""
        return self.code if self.size == "8b" else f"{self.size}-{self.code}"

    @property
    def run_name(self) -> str:
        """Run and output-folder name: the code at 8B, the reference's ``Latxa-Llama-3.1-70B-Instruct-<code>`` at 70B."""
        return self.code if self.size == "8b" else RUN_NAME_70B.format(code=self.code)

    @property
    def backbone_info(self) -> Backbone:
        return BACKBONE_70B if self.size == "70b" else BACKBONES[self.backbone]

    @property
    def trained(self) -> bool:
        return self.code in (TRAINED_70B if self.size == "70b" else TRAINED_8B)

    @property
    def is_baseline(self) -> bool:
        """No data at all: the variant *is* its backbone (exp_2_000 = Llama-3.1-8B-Instruct)."""
        return not (self.corpus_eu or self.inst_eu or self.inst_en)

    @property
    def equivalent_model(self) -> str | None:
        """The untrained model this code stands for, if it is a baseline."""
        return self.backbone_info.hf_name if self.is_baseline else None

    def _parts(self) -> list[tuple[str, str | None]]:
        b = self.backbone_info.paper
        head, sub = b.split("_")
        if self.size == "70b":
            sub += ",70B"
        parts: list[tuple[str, str | None]] = [(head if head == "BASE" else "INST", sub)]
        if self.corpus_eu:
            parts.append(("C", "EU"))
        langs = [lang for lang, on in (("EN", self.inst_en), ("EU", self.inst_eu)) if on]
        if langs:
            parts.append(("I", "+".join(langs)))
        return parts

    @property
    def paper_name(self) -> str:
        """Plain-text paper name, e.g. ``INST_EN C_EU I_EN``."""
        return " ".join(f"{h}_{s}" if s else h for h, s in self._parts())

    @property
    def paper_latex(self) -> str:
        r"""LaTeX paper name, e.g. ``INS\textsubscript{\,EN}\,C\textsubscript{\,EU}\,I\textsubscript{\,EN}``."""
        out = []
        for head, sub in self._parts():
            head = "INS" if head == "INST" else head
            out.append(head + (r"\textsubscript{\," + sub + "}" if sub else ""))
        return r"\,".join(out)

    @property
    def sources(self) -> list[str]:
        """Data sources mixed for this variant, in a stable order."""
        return [name for name, on in (("corpus_eu", self.corpus_eu), ("inst_eu", self.inst_eu), ("inst_en", self.inst_en)) if on]

    def as_dict(self) -> dict:
        bb = self.backbone_info
        return {
            "code": self.code,
            "size": self.size,
            "key": self.key,
            "run_name": self.run_name,
            "paper_name": self.paper_name,
            "paper_latex": self.paper_latex,
            "backbone": self.backbone,
            "backbone_name": bb.paper,
            "backbone_hf_name": bb.hf_name,
            "backbone_kind": bb.kind,
            "corpus_eu": self.corpus_eu,
            "inst_eu": self.inst_eu,
            "inst_en": self.inst_en,
            "trained": self.trained,
            "baseline_of": self.equivalent_model,
        }


def parse(code: str, size: str | None = None) -> Variant:
    """Parse ``exp_B_CIJ`` (also ``70b-exp_B_CIJ`` and ``Latxa-Llama-3.1-70B-Instruct-exp_B_CIJ``); raises
    :class:`VariantError` with one readable sentence. ``size`` ("8b" or "70b") sets the model size; a code that
    names another size is refused."""
    if size is not None and size not in SIZES:
        raise VariantError(f"Model size '{size}' is not one of {', '.join(SIZES)}.")
    text = code.strip() if isinstance(code, str) else ""
    named = None
    m70 = _70B_KEY_RE.match(text)
    if m70:
        text, named = m70.group(1), "70b"
    elif text.startswith(RUN_NAME_70B.format(code="")):
        text, named = text[len(RUN_NAME_70B.format(code="")):], "70b"
    m = CODE_RE.match(text)
    if not m or int(m["b"]) not in BACKBONES:
        raise VariantError(f"'{code}' is not a variant code: {VALID_FORM}.")
    if named and size and named != size:
        raise VariantError(f"'{code}' names a {named.upper()} variant but the profile trains {size.upper()} models.")
    size = named or size or "8b"
    v = Variant(int(m["b"]), m["c"] == "1", m["ieu"] == "1", m["ien"] == "1", size)
    if size == "70b" and v.backbone != BACKBONE_70B.index:
        raise VariantError(f"{v.code} has no 70B form: the study's only 70B backbone is {BACKBONE_70B.hf_name} "
                           f"(backbone {BACKBONE_70B.index}, e.g. exp_2_101).")
    return v


_LATEX_SUB = re.compile(r"\\textsubscript\{\\,([A-Z0-9+,]+)\}")


def from_paper_name(name: str) -> Variant:
    """Inverse of :attr:`Variant.paper_name` / :attr:`Variant.paper_latex`."""
    text = _LATEX_SUB.sub(r"_\1", name).replace(r"\,", " ").replace("$", "")
    tokens = text.split()
    by_paper = {bb.paper: bb.index for bb in BACKBONES.values()}
    if not tokens:
        raise VariantError(f"'{name}' is not a paper name: expected e.g. 'INST_EN C_EU I_EN'.")
    head = tokens[0].replace("INS_", "INST_")
    size = "8b"
    if head.endswith(",70B"):
        head, size = head[:-len(",70B")], "70b"
    if head not in by_paper:
        raise VariantError(f"'{name}' does not start with a backbone (BASE_EN, BASE_EU or INST_EN).")
    corpus = inst_eu = inst_en = False
    for tok in tokens[1:]:
        if tok == "C_EU":
            corpus = True
        elif tok.startswith("I_") and tok[2:]:
            langs = tok[2:].split("+")
            if not set(langs) <= {"EN", "EU"}:
                raise VariantError(f"'{name}' has instructions in an unknown language: {tok}.")
            inst_en, inst_eu = "EN" in langs, "EU" in langs
        else:
            raise VariantError(f"'{name}' has an unknown part '{tok}': expected C_EU or I_EN/I_EU/I_EN+EU.")
    if size == "70b" and by_paper[head] != BACKBONE_70B.index:
        raise VariantError(f"'{name}' has no 70B form: the study's only 70B backbone is INST_EN.")
    return Variant(by_paper[head], corpus, inst_eu, inst_en, size)


def all_variants() -> Iterator[Variant]:
    """Every code of the 3 x 2^3 design, trained or not."""
    for b in sorted(BACKBONES):
        for flags in range(8):
            yield Variant(b, bool(flags & 4), bool(flags & 2), bool(flags & 1))
