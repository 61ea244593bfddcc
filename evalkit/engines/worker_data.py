"""What travels to a worker process and back, as JSON (never pickle): the engine request,
the part of the plan the engine stage reads, and the workers' report and progress files.

A worker's plan carries each task's requests (prompts, references, choices, texts, the
system turn, generation settings) and its metric specs (what they need, their settings:
the engine stage reads both); judges, gates and statistics stay with the parent. The
parent reads the records back through the same request keys, so a request this encoding
got wrong would be a cache miss there, which fails the run (see `ReplayEngine`), never a
silently different record.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from evalkit.engines.registry import EngineRequest
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import MetricSpec


def encode_plan(plan: Plan) -> dict[str, Any]:
    return {
        "variants": list(plan.variants),
        "tasks": [
            {
                "name": t.name,
                "kind": t.kind,
                "system": t.system,
                "max_new_tokens": t.max_new_tokens,
                "stop": list(t.stop),
                "metrics": [dataclasses.asdict(m) for m in t.metrics],
                "examples": [
                    {
                        "id": ex.id,
                        "prompt": ex.prompt,
                        "reference": ex.reference,
                        "choices": list(ex.choices),
                        "text": ex.text,
                    }
                    for ex in t.examples
                ],
            }
            for t in plan.tasks
        ],
    }


def decode_plan(data: dict[str, Any]) -> Plan:
    tasks = []
    for t in data["tasks"]:
        examples = [
            Example(
                id=e["id"],
                prompt=e["prompt"],
                reference=e["reference"],
                choices=tuple(e["choices"]),
                text=e["text"],
            )
            for e in t["examples"]
        ]
        metrics = [MetricSpec(**m) for m in t["metrics"]]
        tasks.append(
            TaskPlan(
                t["name"],
                t["kind"],
                "",
                examples,
                metrics,
                system=t["system"],
                max_new_tokens=t["max_new_tokens"],
                stop=tuple(t["stop"]),
            )
        )
    return Plan(list(data["variants"]), tasks)


def encode_request(request: EngineRequest) -> dict[str, Any]:
    """The request as JSON data; `options` (the suite's `engine:` block, read from YAML)
    must be JSON data already."""
    return {
        "base": request.base,
        "adapters": {n: str(p) for n, p in request.adapters.items()},
        "dtype": request.dtype,
        "device": request.device,
        "load_in_4bit": request.load_in_4bit,
        "batch_size": request.batch_size,
        "relative_to": None if request.relative_to is None else str(request.relative_to),
        "options": request.options,
    }


def decode_request(data: dict[str, Any], adapters: list[str]) -> EngineRequest:
    """The request with only the named adapters (a worker loads its share; an engine that
    takes no adapter directories has none to share)."""
    return EngineRequest(
        data["base"],
        {n: Path(data["adapters"][n]) for n in adapters if n in data["adapters"]},
        dtype=data["dtype"],
        device=data["device"],
        load_in_4bit=data["load_in_4bit"],
        batch_size=data["batch_size"],
        relative_to=None if data["relative_to"] is None else Path(data["relative_to"]),
        options=data["options"],
    )


def write_json(path: Path, data: Any) -> None:
    """Whole or not at all: the reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object at `path`, or {} where there is none (yet)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
