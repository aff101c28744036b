"""The package's folders import in one direction: foundations -> data -> models -> tasks -> drivers / commands.

Every ``import speechkit.x`` anywhere in a module counts, also one inside a function: a lazy import is still a
dependency. A module may import its own top-level package and anything in a lower layer, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speechkit"

# Top-level module or package of speechkit -> its layer. A new one must be placed here (the test says so).
LAYERS: dict[str, int] = {
    # 0: conventions every module shares
    "errors": 0, "tensors": 0, "progress": 0,
    # 1: components: pure functions and small modules of the papers, checkpoint files (no task imported)
    "text": 1, "metrics": 1, "losses": 1, "optim": 1, "distill": 1, "compress": 1, "curvature": 1, "scaling": 1,
    "checkpoints": 1, "loggers": 1, "rl": 1,
    # 2: corpora -> manifests -> batches; class-incremental streams over CutSets
    "data": 2, "continual": 2,
    # 3: Whisper loading and adaptation, encoders, heads, the sequence-to-sequence core
    "models": 3,
    # 4: one thin LightningModule per method
    "tasks": 4,
    # 5: what chains tasks, checkpoints and data: drivers, inference, the command line, test factories
    "drivers": 5, "inference": 5, "lightning_cli": 5, "config": 5, "commands": 5, "cli": 5, "testing": 5,
    "__init__": 5, "bench": 5,
}


def top_level(module: str) -> str:
    """``speechkit.data.sampling`` -> ``data``; ``speechkit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def speechkit_imports(path: Path) -> set[str]:
    """Every ``speechkit...`` module that ``path`` imports (absolute imports; the package uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "speechkit":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "speechkit")
    return found


def test_every_top_level_module_has_a_layer():
    names = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" or (path / "__init__.py").is_file())}
    assert names - set(LAYERS) == set(), "place the new module in LAYERS (tests/test_layers.py)"


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = top_level(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module in speechkit_imports(path):
            target = top_level(module)
            if target != source and LAYERS[target] > LAYERS[source]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} (layer {LAYERS[source]}) imports {module} "
                             f"(layer {LAYERS[target]})")
    assert not wrong, "\n".join(wrong)


def test_no_empty_package():
    empty = [str(folder.relative_to(PACKAGE.parent)) for folder in PACKAGE.rglob("*")
             if folder.is_dir() and folder.name != "__pycache__"
             and not [f for f in folder.glob("*.py") if f.name != "__init__.py"]
             and not [d for d in folder.iterdir() if d.is_dir() and d.name != "__pycache__"]]
    assert not empty, f"packages without modules: {empty}"
