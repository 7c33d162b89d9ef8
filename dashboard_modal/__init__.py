"""Modal-side implementations of the dashboard's two cloud seams.

- :class:`ModalVolumeStore` satisfies ``dashboard.volumes.VolumeStore`` with one Modal Volume
  per session (``dataset-volume-{session_id}``).
- :class:`ModalAgentLauncher` satisfies ``dashboard.runner.AgentLauncher`` by spawning the
  ``run_agent_remotely`` Modal Function with the session's volume mounted at call time.

Only ``modal_app.py`` imports this package; ``dashboard/`` never does (it stays cloud-free).
Both classes take the Modal objects they talk to as constructor arguments, so tests replace
exactly the cloud seam and nothing else.
"""

from dashboard_modal.launcher import AGENT_MOUNT, ModalAgentLauncher, run_agent_job
from dashboard_modal.volumes import ModalVolumeStore, default_volume_factory

__all__ = [
    "AGENT_MOUNT",
    "ModalAgentLauncher",
    "ModalVolumeStore",
    "default_volume_factory",
    "run_agent_job",
]
