"""`latxa variants list|show`: the study's design (registry) as data."""

from __future__ import annotations

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The study's model variants (exp_B_CIJ codes) and their paper names.", no_args_is_help=True)

    @group.command("list", help="List every variant code of the 3 x 2^3 design." + example("latxa variants list --trained --format json"))
    def list_(
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
        trained: bool = typer.Option(False, "--trained", help="Only the 17 variants the study trained."),
    ) -> None:
        from latxa.components.registry import all_variants

        rows = [v.as_dict() for v in all_variants() if v.trained or not trained]
        if fmt == OutputFormat.json:
            emit_json(rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("code", "paper name", "backbone", "C_EU", "I_EU", "I_EN", "trained", "baseline of")
        for r in rows:
            table.add_row(r["code"], r["paper_name"], r["backbone_name"], *("x" if r[k] else "" for k in ("corpus_eu", "inst_eu", "inst_en", "trained")), r["baseline_of"] or "")
        Console().print(table)

    @group.command("show", help="Show one variant; CODE may also be a paper name." + example("latxa variants show exp_1_011"))
    def show(code: str = typer.Argument(..., help="exp_B_CIJ code or paper name such as 'BASE_EU I_EN+EU'")) -> None:
        from latxa.components.registry import from_paper_name, parse

        variant = parse(code) if code.startswith("exp_") or not code[:1].isupper() else from_paper_name(code)
        emit_json(variant.as_dict())

    app.add_typer(group, name="variants")
