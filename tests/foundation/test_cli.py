def test_help_lists_every_group(cli):
    res = cli("--help")
    assert res.returncode == 0
    for verb in ("variants", "model", "config", "demo"):
        assert verb in res.stdout


def test_each_verb_has_help_with_example(cli):
    for args in (["variants", "list"], ["variants", "show"], ["model", "tiny"], ["config", "show"]):
        res = cli(*args, "--help")
        assert res.returncode == 0, args
        assert "Example" in res.stdout and "latxa " in res.stdout, args


def test_usage_errors_are_one_message_not_a_traceback(cli):
    for args in (["no-such-verb"], ["variants", "show", "--bogus"], ["variants"]):
        res = cli(*args)
        assert res.returncode == 2, args
        assert "Traceback" not in res.stderr, args
    assert "No such command" in cli("no-such-verb").stderr


def _all_commands():
    """(path, click command) for every verb of the `latxa` app, walked in-process (Typer vendors its own click,
    so groups and options are recognised by their interface)."""
    import typer.main

    from latxa.cli.app import app

    root = typer.main.get_command(app)
    stack = [((), root)]
    while stack:
        path, cmd = stack.pop()
        if hasattr(cmd, "commands"):
            stack += [((*path, name), sub) for name, sub in cmd.commands.items()]
        if path:
            yield " ".join(path), cmd


def test_every_verb_has_an_example_and_one_spelling_of_format():
    seen = 0
    for name, cmd in _all_commands():
        seen += 1
        if not hasattr(cmd, "commands") or cmd.invoke_without_command:
            assert "Example:" in (cmd.help or ""), f"`latxa {name}` --help has no example"
        for p in cmd.params:
            assert "--json" not in getattr(p, "opts", []), f"`latxa {name}` spells the output format --json"
            if "--format" in getattr(p, "opts", []):
                # validated: an unknown format is a usage error, never silently a table
                from enum import Enum

                kind = p.type_descriptor.annotation
                assert isinstance(kind, type) and issubclass(kind, Enum), f"`latxa {name} --format` takes any string"
            if getattr(p, "is_flag", False):
                assert not p.required, f"`latxa {name}` has a mandatory flag {p.opts}"
    assert seen > 30


def test_examples_name_only_files_that_exist():
    """A help example that points into the repository (serving/..., components/...) names a real file."""
    import re

    from latxa.paths import CHECKOUT

    layers = ("components/", "serving/", "slurm/", "k8s/", "mlflow/", "data/", "pipelines/")
    for name, cmd in _all_commands():
        text = (cmd.help or "").split("Example:", 1)[-1]
        for token in re.findall(r"[\w./-]+\.(?:ya?ml|json|jsonl|env|example)\b", text):
            if token.startswith(layers):
                assert (CHECKOUT / token).exists(), f"`latxa {name}` --help example names {token}, which does not exist"


def test_eval_tasks_refuses_an_unknown_format(cli):
    res = cli("eval", "tasks", "--format", "yaml")
    assert res.returncode == 2 and "yaml" in res.stderr and "Traceback" not in res.stderr


def test_readme_shows_every_verb():
    """The README is the newcomer's map: every leaf verb appears in it as a command line (`latxa <verb> ...`)."""
    import re

    from latxa.paths import CHECKOUT

    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    missing = [name for name, cmd in _all_commands() if not hasattr(cmd, "commands")
               and not re.search(rf"latxa {re.escape(name)}(?=[\s`])", readme)]
    assert not missing, f"README.md has no example of: {', '.join('latxa ' + m for m in missing)}"
