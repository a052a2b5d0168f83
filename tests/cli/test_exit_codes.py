"""Exit codes have one owner, finetune/errors.py: every command (`python -m finetune ...`, the job, its
launcher, a sweep) answers 0 done, 1 failed, 2 invalid input from the same three names."""

import ast
from pathlib import Path

import finetune
from finetune import errors

PACKAGE = Path(finetune.__file__).parent
NAMES = {"EXIT_OK": 0, "EXIT_FAILED": 1, "EXIT_INVALID": 2}
# finetune/cli.py still assigns its own three (another change owns that file); its values are held to the
# owner's below until it imports them.
ASSIGNS_ITS_OWN = {"errors.py"}


def assigned_exit_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and leaf.id in NAMES:
                    names.add(leaf.id)
    return names


def test_the_owner_says_0_done_1_failed_2_invalid():
    assert {name: getattr(errors, name) for name in NAMES} == NAMES


def test_no_other_module_defines_exit_codes():
    defining = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if assigned_exit_names(p)}
    assert defining <= ASSIGNS_ITS_OWN, f"import the exit codes from finetune.errors in {defining - ASSIGNS_ITS_OWN}"


def test_every_command_module_answers_with_the_owners_values():
    from finetune import cli
    from finetune.adapter import cli as adapter_cli
    from finetune.jobs import sweep_cli

    for module in (cli, adapter_cli, sweep_cli):
        for name in NAMES:
            if hasattr(module, name):
                assert getattr(module, name) == NAMES[name], f"{module.__name__}.{name}"
