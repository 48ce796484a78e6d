"""The tree tells the story: launcher/ is grouped by stage and no module imports from a stage above its own.

cli -> lifecycle -> (node | verify | operate) -> plan -> sky -> ground. node, verify and operate sit
side by side and do not import each other. Lazy imports inside functions count too.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "launcher"

# rank of each stage: a module may import from its own stage and from lower ranks only
STAGES = {"ground": 0, "sky": 1, "plan": 2, "node": 3, "verify": 3, "operate": 3, "lifecycle": 4, "cli": 5}
GROUND = {"__init__", "errors", "phases"}


def stage_of(module: str) -> str:
    """'launcher.plan.catalog' -> 'plan'; 'launcher.errors' -> 'ground'; 'launcher' -> 'ground'."""
    parts = module.split(".")
    assert parts[0] == "launcher", module
    if len(parts) == 1 or parts[1] in GROUND:
        return "ground"
    if parts[1] in STAGES:
        return parts[1]
    raise AssertionError(f"{module}: not in a known stage")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute, including `from launcher.x import y` as launcher.x.y."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            modules.add(node.module)
            if node.module.split(".")[0] == "launcher":
                modules |= {f"{node.module}.{a.name}" for a in node.names}
    return modules


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_root_holds_at_most_six_modules_besides_the_stage_packages():
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root_modules) <= 6, root_modules
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(packages) - {"catalogs"} == {"cli", "plan", "node", "sky", "verify", "operate"}


def upward_imports(module: str, imports: set[str]) -> list[str]:
    """The imports of `module` that reach a stage above its own, or a sibling stage."""
    own = stage_of(module)
    wrong = []
    for target in sorted(imports):
        if target.split(".")[0] != "launcher" or not _is_module(target):
            continue
        other = stage_of(target)
        if not (STAGES[other] < STAGES[own] or other == own):
            wrong.append(f"{module} ({own}) imports {target} ({other})")
    return wrong


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_imports_from_a_stage_above_or_beside_its_own(path):
    assert upward_imports(module_name(path), imported_modules(path)) == []


def _is_module(dotted: str) -> bool:
    """launcher.plan.catalog is a module; launcher.plan.catalog.Catalog (a name) is not."""
    rel = Path(*dotted.split("."))
    return (PACKAGE.parent / rel.with_suffix(".py")).is_file() or (PACKAGE.parent / rel / "__init__.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_only_the_seam_imports_skypilot_and_only_cli_imports_click_or_rich(path):
    tops = {m.split(".")[0] for m in imported_modules(path)}
    rel = path.relative_to(PACKAGE).as_posix()
    if rel != "sky/skyapi.py":
        assert "sky" not in tops, rel
    if not rel.startswith("cli/"):
        assert not tops & {"click", "rich"}, rel


def test_the_layering_check_names_upward_and_sideways_imports(tmp_path):
    """The rule is not vacuous: a lazy import of lifecycle from plan, and verify importing node, are named."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from launcher import lifecycle\n    from launcher.node import render\n")
    found = upward_imports("launcher.verify.smoke", imported_modules(source))
    assert found == ["launcher.verify.smoke (verify) imports launcher.lifecycle (lifecycle)",
                     "launcher.verify.smoke (verify) imports launcher.node (node)",
                     "launcher.verify.smoke (verify) imports launcher.node.render (node)"]
    assert upward_imports("launcher.cli.deploying", imported_modules(source)) == []
