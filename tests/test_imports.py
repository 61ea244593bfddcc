"""The data flows one way: suite -> plan -> engines -> scoring -> decide -> outputs.

This walks every import in evalkit/ (function-level imports too: they are dependencies
all the same) and fails on an import cycle, or on a stage importing a module it must not:
a stage after the plan reads the plan's values (`evalkit.plan.types`, the prompt layer
`evalkit.plan.prompts`), never the suite or the plan builder. The allowed edges are listed
here explicitly, so a new one is a decision made in review, not an accident."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "evalkit"

# Shared leaves every module may import.
# redact: the one redaction step for server strings; weights: safetensors-only checks of
# model and adapter files, made at validate and before a load.
COMMON = {
    "evalkit",
    "evalkit.errors",
    "evalkit.paths",
    "evalkit.profile",
    "evalkit.redact",
    "evalkit.weights",
}
# Plan values the later stages take as input.
PLAN_VALUES = {"evalkit.plan.types", "evalkit.plan.prompts"}
# A stage (a package of evalkit/) -> the modules or packages it may import besides
# COMMON and itself. A prefix allows its submodules.
ALLOWED: dict[str, set[str]] = {
    "evalkit.suite": set(),
    # the plan builder reads the suite and checks metric and judge specs against it (user
    # regexes compile for RE2, calibration labels parse, both at validate)
    "evalkit.plan": {
        "evalkit.suite",
        "evalkit.scoring.metrics",
        "evalkit.scoring.judges.spec",
        "evalkit.scoring.text",
        "evalkit.scoring.judges.calibrate",
    },
    # the served engine shares the judge's OpenAI client (concurrency, Retry-After, backoff)
    "evalkit.engines": PLAN_VALUES
    | {"evalkit.scoring.metrics", "evalkit.scoring.judges.openai_provider"},
    # the judge spec format shares the suite's YAML reader (line numbers in errors)
    "evalkit.scoring": PLAN_VALUES | {"evalkit.engines", "evalkit.suite.yaml_lines"},
    "evalkit.decide": PLAN_VALUES | {"evalkit.engines", "evalkit.scoring"},
    "evalkit.outputs": PLAN_VALUES
    | {"evalkit.engines.records", "evalkit.scoring", "evalkit.decide"},
    # training builds adapters for the suite's `train:` blocks, before the plan runs
    # (and reads its data files with the plan's reader)
    "evalkit.training": PLAN_VALUES | {"evalkit.suite", "evalkit.engines", "evalkit.plan.datasets"},
}
# The orchestrators wire the stages together and may import any of them (so may the
# package itself, whose __init__ is the public API: run_suite, load_run, validate).
# engine_stage: the pipeline's engine stage (engine, reference, integrity and parity),
# split out of pipeline.py; it reads the suite's `engine:` block as the pipeline does.
ORCHESTRATORS = ("evalkit.pipeline", "evalkit.engine_stage", "evalkit.cli", "evalkit.__main__")


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        name = ".".join(f.relative_to(PKG.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the evalkit modules it imports, anywhere in its body."""

    def target(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".")
                    if path.name != "__init__.py":
                        parts = parts[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for n in names:
                t = target(n)
                # importing a submodule runs its parents' __init__: not a separate edge
                if t and t != mod and t.startswith("evalkit") and not mod.startswith(t + "."):
                    edges[mod].add(t)
    return edges


def _stage(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def _allowed(mod: str, dep: str) -> bool:
    if (
        mod == "evalkit"
        or mod.startswith(ORCHESTRATORS)
        or dep in COMMON
        or _stage(dep) == _stage(mod)
    ):
        return True
    allowed = ALLOWED.get(_stage(mod))
    if allowed is None:
        return False  # a module outside every stage: add it to the table above
    return any(dep == a or dep.startswith(a + ".") for a in allowed)


def test_no_forbidden_import_edge() -> None:
    edges = _imports(_modules())
    bad = sorted(f"{m} -> {d}" for m, ds in edges.items() for d in ds if not _allowed(m, d))
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_walk_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The walker itself: an import inside a function is an edge."""
    edges = _imports(_modules())
    # pipeline.run_suite imports the engine registry inside the function
    assert "evalkit.engines.registry" in edges["evalkit.pipeline"]
    assert _allowed("evalkit.decide.verdicts", "evalkit.plan.types")
    assert not _allowed("evalkit.decide.verdicts", "evalkit.suite.config")
    assert not _allowed("evalkit.scoring.judges.run", "evalkit.plan.build")
    assert not _allowed("evalkit.engines.hf", "evalkit.decide.integrity")
