"""Who may import whom: the ground floor (contracts/) under everything, the catalog speaking only it,
pure compute free of Prefect and SQL, and no import circle among the heads. Every import counts,
including those inside functions."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "catalog", "pipeline", "models", "flows", "steps", "nearmiss")


def _modules(package: str) -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: Path, module: str) -> set[str]:
    """Every module name an import statement in the file names (relative imports resolved)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[:-node.level] if not path.name == "__init__.py" else \
                    module.split(".")[:len(module.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)   # `from models import temporal`
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", ["catalog"])
def test_the_catalog_imports_only_the_contracts_of_the_other_packages(package):
    wrong = {f"{m}: {i}" for m, p in _modules(package).items() for i in _imports(p, m)
             if _top(i) in {"pipeline", "models", "flows", "steps", "nearmiss"}}
    assert not wrong, "catalog/ may import contracts/ only:\n" + "\n".join(sorted(wrong))


def test_the_contracts_stand_on_nothing_of_ours_and_nothing_heavy():
    heavy = {"torch", "cv2", "prefect", "duckdb", "open_clip", "av", "decord", "openvino", "onnxruntime"}
    wrong = {f"{m}: {i}" for m, p in _modules("contracts").items() for i in _imports(p, m)
             if _top(i) in set(PACKAGES) - {"contracts"} or _top(i) in heavy}
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("package", ["pipeline", "models"])
def test_pure_compute_imports_no_prefect_no_sql_and_no_wiring(package):
    wrong = {f"{m}: {i}" for m, p in _modules(package).items() for i in _imports(p, m)
             if _top(i) in {"prefect", "duckdb", "catalog", "flows", "steps", "nearmiss"}}
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle_among_the_models():
    mods = _modules("models")
    graph = {m: {i for i in _imports(p, m) if i in mods and i != m} for m, p in mods.items()}
    for m in graph:   # `import models.heads` also runs models/__init__: not an edge worth counting
        graph[m].discard("models")
    seen, on_path, circles = set(), [], []

    def visit(m):
        if m in on_path:
            circles.append(on_path[on_path.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        on_path.append(m)
        for n in sorted(graph[m]):
            visit(n)
        on_path.pop()

    for m in sorted(graph):
        visit(m)
    assert not circles, "import circles in models/:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_circle_check_sees_an_import_inside_a_function(tmp_path):
    """The walk counts function-level imports (the kind that hid the old circle)."""
    f = tmp_path / "m.py"
    f.write_text("def fit():\n    from models.training import TrainSpec\n")
    assert "models.training" in _imports(f, "models.m")
