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
