"""The library's shape: stages import only ``core`` and the stages before them, no module
imports itself through a circle, and the old module paths that saved models name still load.

Read from the source (every import statement, nested and ``TYPE_CHECKING`` ones included), not
from what happens to be imported at run time. No Spark, no JVM.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipelines"
# In the order they may import each other: each stage may import core and those before it...
STAGES = ["core", "data", "features", "model", "training", "lifecycle", "scoring", "online", "monitoring", "serving"]
# ... except where a stage may import fewer: the service scores with the portable form alone.
MAY_IMPORT = {"serving": {"core", "data", "features", "model", "online"}}
# Old paths that registered versions name, kept as aliases (see their docstrings). Not stages:
# they may import a stage; no stage may import them.
ALIASES = {"pipelines.portable", "pipelines.portable.pyfunc"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path`` of a ``pipelines`` module, resolved to the
    module itself where ``from package import module`` names one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            targets = [base]
            # `from pipelines.model import release` imports the module pipelines.model.release.
            targets += [f"{base}.{alias.name}" for alias in node.names
                        if (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/")).with_suffix(".py").is_file()
                        or (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/") / "__init__.py").is_file()]
        else:
            continue
        for target in targets:
            if target == "pipelines" or target.startswith("pipelines."):
                yield node.lineno, target


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def direction_violations(modules: dict[str, Path]) -> list[str]:
    found = []
    for name, path in modules.items():
        if name in ALIASES or name == "pipelines":
            continue
        stage = stage_of(name)
        if stage is None:
            found.append(f"{name}: not in a stage package ({', '.join(STAGES)})")
            continue
        for line, target in imported_modules(path, name):
            target_stage = stage_of(target)
            if target in ALIASES or any(target.startswith(alias + ".") for alias in ALIASES):
                found.append(f"{path.relative_to(ROOT)}:{line}: a stage imports the old alias {target}")
            elif target_stage is None:
                if target != "pipelines":
                    found.append(f"{path.relative_to(ROOT)}:{line}: imports {target}, which is in no stage")
            elif target_stage != "core" and STAGES.index(target_stage) > STAGES.index(stage):
                found.append(f"{path.relative_to(ROOT)}:{line}: {stage} imports {target} (a later stage)")
            elif target_stage != stage and target_stage not in MAY_IMPORT.get(stage, {target_stage}):
                found.append(f"{path.relative_to(ROOT)}:{line}: {stage} imports {target} (not one it may import)")
    return found


def import_circles(modules: dict[str, Path]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    graph = {name: sorted({target for _, target in imported_modules(path, name)
                           if target in modules and target != name})
             for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return circles


def test_every_stage_imports_only_core_and_the_stages_before_it():
    assert direction_violations(library_modules()) == []


def test_no_module_imports_itself_through_a_circle():
    assert import_circles(library_modules()) == []


def write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {".".join(Path(relative).with_suffix("").parts).removesuffix(".__init__"): root / relative
            for relative in files}


def test_the_checks_catch_a_later_stage_and_a_circle(tmp_path, monkeypatch):
    """The two checks above can fail: an earlier stage importing a later one, and a circle."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "pipelines")
    modules = write_package(tmp_path, {
        "pipelines/__init__.py": "",
        "pipelines/core/__init__.py": "",
        "pipelines/core/a.py": "from pipelines.core import b\n",
        "pipelines/core/b.py": "def f():\n    from pipelines.core.a import x\n",
        "pipelines/model/__init__.py": "",
        "pipelines/model/m.py": "from pipelines.scoring.s import y\n",
        "pipelines/scoring/__init__.py": "",
        "pipelines/scoring/s.py": "from ..model import m\nfrom pipelines.core.a import z\n",
    })
    assert direction_violations(modules) == [
        "pipelines/model/m.py:1: model imports pipelines.scoring.s (a later stage)"]
    assert sorted(import_circles(modules)) == [["pipelines.core.a", "pipelines.core.b"],
                                               ["pipelines.model.m", "pipelines.scoring.s"]]


@pytest.mark.parametrize("name", ["MeanProbability", "build_pipeline", "fraud_probability", "ENSEMBLE"])
def test_the_old_model_module_names_resolve_to_the_stages_module(name):
    import pipelines.model
    import pipelines.model.stages

    assert getattr(pipelines.model, name) is getattr(pipelines.model.stages, name)
    # What Spark's reader does with a saved class name: import the module, then getattr.
    module = __import__("pipelines.model", fromlist=[name])
    assert getattr(module, name) is getattr(pipelines.model.stages, name)


def test_the_old_pyfunc_loader_module_has_what_mlflow_calls():
    import pipelines.model.portable.pyfunc as current
    import pipelines.portable.pyfunc as old

    assert old._load_pyfunc is current._load_pyfunc
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(__import__("pipelines.model", fromlist=["x"]), "NoSuchThing")  # noqa: B009
