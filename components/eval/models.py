"""The models the study evaluated and what kind each is, which decides how lm-eval prompts it.

* ``base`` (Llama-3.1-8B, Latxa-Llama-3.1-8B): plain-text few-shot prompts, no chat template.
* ``instruct`` (Meta's and HiTZ's instruct models) and ``finetuned`` (the 17 trained 8B variants, branches of
  ``HiTZ/Latxa-Llama-3.1-8B-Instruct`` named by their variant code): the chat template, with the few-shot
  examples as user/assistant turns (lm-eval's ``--apply_chat_template --fewshot_as_multiturn``).
* ``api`` (GPT-4o, Claude 3.5 Sonnet): the providers' chat APIs, as in ``paper-api``.

Backbone kinds come from the variant registry (:mod:`latxa.components.registry`); every variant code is a
fine-tuned model. Results folders are named as the study named them (``HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_2_101``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from latxa.components.eval.errors import EvalError
from latxa.components.registry import BACKBONES, CODE_RE, TRAINED_8B, parse

KINDS = ("base", "instruct", "finetuned", "api")
VARIANTS_REPO = "HiTZ/Latxa-Llama-3.1-8B-Instruct"      # one branch per trained 8B variant
LATXA_70B = "HiTZ/Latxa-Llama-3.1-70B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
#: lm-eval model types of the study's API models, by the prefix this project accepts (``openai:gpt-4o-...``).
API_PROVIDERS = {"openai": "openai-chat-completions", "anthropic": "anthropic-chat-completions"}
#: the study's API model arguments (Claude ran with max_length=10000)
API_ARGS = {"openai": {"max_length": 8192, "temperature": 0.0, "max_retries": 5},
            "anthropic": {"max_length": 10000, "temperature": 0.0, "max_retries": 5}}
API_MODELS = {"gpt-4o-2024-11-20": "openai", "claude-3-5-sonnet-20241022": "anthropic"}


@dataclass(frozen=True)
class StudyModel:
    """A model of the study: hub id, revision (variant branch), kind, size."""

    hf_name: str
    kind: str
    revision: str | None = None
    size: str = "8B"
    variant: str | None = None

    @property
    def results_name(self) -> str:
        """The study's results folder name: org__name, plus __revision for the variant branches."""
        name = self.hf_name.replace("/", "__")
        return f"{name}__{self.revision}" if self.revision else name

    @property
    def chat(self) -> bool:
        return self.kind != "base"

    @property
    def big(self) -> bool:
        return self.size == "70B"


def study_models() -> list[StudyModel]:
    """The 22 self-hosted models of the study's tables (the 2 API models are in :data:`API_MODELS`)."""
    out = [StudyModel(VARIANTS_REPO, "finetuned", revision=code, variant=code) for code in TRAINED_8B]
    out += [StudyModel(b.hf_name, b.kind) for b in BACKBONES.values()]
    out.append(StudyModel(LATXA_70B, "instruct", size="70B"))
    out.append(StudyModel(LLAMA_70B, "instruct", size="70B"))
    return out


_BY_NAME = {m.hf_name: m for m in study_models() if m.revision is None}
_SIZE_RE = re.compile(r"(?<![0-9])(\d+)B(?![a-z])")


def from_variant(code: str) -> StudyModel:
    """A variant code as the model it names: a trained variant's branch, or a baseline's backbone."""
    v = parse(code)
    if v.is_baseline:
        return _BY_NAME[v.backbone_info.hf_name]
    if not v.trained:
        raise EvalError(f"variant {v.code} was not trained in the study (`latxa variants list --trained`); "
                        f"evaluate a model folder of it instead.")
    return StudyModel(VARIANTS_REPO, "finetuned", revision=v.code, variant=v.code)


def lookup(model: str, revision: str | None = None) -> StudyModel | None:
    """The study model ``model`` names (a variant code, or a hub id [+ revision]); None if it is not one."""
    if CODE_RE.match(model.strip()):
        return from_variant(model.strip())
    if model == VARIANTS_REPO and revision and CODE_RE.match(revision):
        return from_variant(revision)
    known = _BY_NAME.get(model)
    if known:
        return StudyModel(known.hf_name, known.kind, revision=revision, size=known.size)
    return None


def guess_size(name: str) -> str:
    """'70B' / '8B' from a model name, '' if it says nothing."""
    m = _SIZE_RE.search(name)
    return f"{m.group(1)}B" if m else ""
