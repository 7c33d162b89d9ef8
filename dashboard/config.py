"""One frozen settings object, read from ``DASHBOARD_*`` environment variables at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

MIB = 1024 * 1024

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = Path(".dashboard-data")
DEFAULT_AGENT = "dashboard.agent.builtin:run_agent_remotely"
DEFAULT_CHUNK_SIZE = 8 * MIB  # bytes per tus PATCH sent by our clients
DEFAULT_HISTORY = 100_000  # events retained per session for replay
DEFAULT_UPLOAD_EXPIRY_S = 86_400  # an unfinished upload is swept after this
DEFAULT_RUN_TIMEOUT_S = 3_600.0  # an agent run longer than this is failed
DEFAULT_MAX_UPLOAD_SIZE = 1024 * 1024 * MIB  # 1 TiB, advertised as Tus-Max-Size
# When an upload's bytes are flushed to disk: "complete" (once, when the file is complete,
# before it is published; a PATCH is acknowledged once written, as tusd's file store does)
# or "chunk" (every PATCH before its acknowledgement: power-loss-safe offsets, slower)
UPLOAD_SYNC_MODES = ("complete", "chunk")
DEFAULT_UPLOAD_SYNC = "complete"


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one dashboard process."""

    data_dir: Path = DEFAULT_DATA_DIR
    public_url: str | None = None
    agent: str = DEFAULT_AGENT
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    chunk_size: int = DEFAULT_CHUNK_SIZE
    history: int = DEFAULT_HISTORY
    upload_expiry: float = DEFAULT_UPLOAD_EXPIRY_S
    run_timeout: float = DEFAULT_RUN_TIMEOUT_S
    max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    upload_sync: str = DEFAULT_UPLOAD_SYNC

    @property
    def volumes_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``DASHBOARD_*`` variables (``PORT``/``HOST`` also honoured)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"DASHBOARD_{name}")
            return value if value not in (None, "") else None

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError as exc:
                raise SettingsError(f"DASHBOARD_{name} must be a number, got {raw!r}") from exc
            if value <= 0:
                raise SettingsError(f"DASHBOARD_{name} must be positive, got {raw!r}")
            return value

        port_raw = get("PORT") or env.get("PORT") or str(DEFAULT_PORT)
        try:
            port = int(port_raw)
        except ValueError as exc:
            raise SettingsError(f"port must be an integer, got {port_raw!r}") from exc
        upload_sync = (get("UPLOAD_SYNC") or DEFAULT_UPLOAD_SYNC).strip().lower()
        if upload_sync not in UPLOAD_SYNC_MODES:
            raise SettingsError(
                f"DASHBOARD_UPLOAD_SYNC must be one of {', '.join(UPLOAD_SYNC_MODES)}, "
                f"got {upload_sync!r}"
            )
        origins = tuple(o.strip() for o in (get("CORS_ORIGINS") or "").split(",") if o.strip())
        return cls(
            data_dir=Path(get("DATA_DIR") or DEFAULT_DATA_DIR),
            public_url=(get("PUBLIC_URL") or "").rstrip("/") or None,
            agent=get("AGENT") or DEFAULT_AGENT,
            host=get("HOST") or env.get("HOST") or DEFAULT_HOST,
            port=port,
            chunk_size=int(number("CHUNK_SIZE", DEFAULT_CHUNK_SIZE, int)),
            history=int(number("HISTORY", DEFAULT_HISTORY, int)),
            upload_expiry=number("UPLOAD_EXPIRY", DEFAULT_UPLOAD_EXPIRY_S, float),
            run_timeout=number("RUN_TIMEOUT", DEFAULT_RUN_TIMEOUT_S, float),
            max_upload_size=int(number("MAX_UPLOAD_SIZE", DEFAULT_MAX_UPLOAD_SIZE, int)),
            cors_origins=origins,
            upload_sync=upload_sync,
        )
