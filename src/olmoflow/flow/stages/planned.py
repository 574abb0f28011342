"""Stage types of the OLMo 3 flow that are declared but not implemented yet.

``olmoflow run --dry-run`` plans them (with token counts and GPU-hour estimates); a real run stops
with "stage type X is not implemented yet". Replace a line here with a real wrapper module when the
stage lands.
"""

from __future__ import annotations

from olmoflow.flow.registry import STAGES, register_planned

#: none at present (midtrain, long_context and soup landed); the mechanism stays for the next ones
PLANNED: dict[str, str] = {}

for _name, _desc in PLANNED.items():
    if _name not in STAGES or STAGES[_name].planned:
        register_planned(_name, _desc, fork_input=None if _name == "soup" else "init_from")
