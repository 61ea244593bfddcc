"""The general probes: what a model should not forget while learning a format.

Two registries: probe kinds (`kinds`: multiple_choice, open_answer, prose, open_ended, one
module each), which turn a declared probe (a suite's `probes.extra` entry, or a built-in
probe file) into a probe task; and the built-in probes (`registry`), names a suite lists
under `probes.builtin`, grouped into tasks (`general` declares them from the probe files
in `evalkit/plan/probe_data/`, see its README for how the data was made). Every other
module of this package registers on import, so adding a kind or a probe is adding a
module here (and a built-in probe's name to the suite schema's `BuiltinProbe`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import get_args

from evalkit.plan.probes.kinds import (
    KindMetric,
    ProbeKind,
    build_kind_probe,
    kind_names,
    probe_kind,
    register_kind,
)
from evalkit.plan.probes.registry import (
    ProbeDef,
    ProbeGroup,
    build_probes,
    probe_data_dir,
    probe_def,
    probe_names,
    register_probe,
    register_probe_group,
)
from evalkit.plan.types import TaskPlan
from evalkit.suite.config import BuiltinProbe

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("registry", "kinds") and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

# The names a suite may list under `probes: builtin:` (one list, in the suite schema; a
# test holds it equal to the registry's).
BUILTIN_PROBES: tuple[str, ...] = get_args(BuiltinProbe)
# The change a reviewer would accept, per probe, in the probe metric's own unit.
DEFAULT_MARGINS: dict[str, float] = {n: probe_def(n).default_margin for n in probe_names()}


def builtin_probes(which: list[str], margins: dict[str, float]) -> list[TaskPlan]:
    """The probe tasks for the chosen probe names. Probes that read the same data share a
    task (the prose probes: one prose task; the open-prompt probes: one task), in
    registration order."""
    return build_probes(which, margins)


__all__ = [
    "BUILTIN_PROBES",
    "DEFAULT_MARGINS",
    "KindMetric",
    "ProbeKind",
    "build_kind_probe",
    "kind_names",
    "probe_kind",
    "register_kind",
    "ProbeDef",
    "ProbeGroup",
    "build_probes",
    "builtin_probes",
    "probe_data_dir",
    "probe_def",
    "probe_names",
    "register_probe",
    "register_probe_group",
]
