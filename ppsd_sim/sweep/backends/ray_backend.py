"""The Ray backend: the same batches on a Ray cluster (``--address``) or a local Ray
instance started for the sweep. Ray is optional; it is imported here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ppsd_sim.errors import ConfigError

INSTALL_HINT = "pip install -e '.[ray]'"


class RayBackend:
    """Connects on enter, disconnects (and stops a local instance it started) on exit."""

    name = "ray"

    def __init__(self, workers: int | None, address: str | None) -> None:
        self.workers = workers or 0
        self._requested = workers
        self.address = address
        self._ray: Any = None

    def __enter__(self) -> RayBackend:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "backend", f"the ray backend needs ray, which is not installed ({INSTALL_HINT})"
            ) from None
        opts: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "WARNING",
        }
        try:
            if self.address:
                ray.init(address=self.address, **opts)
            else:
                from ppsd_sim.sweep.backends import available_cores

                ray.init(num_cpus=self._requested or available_cores(), **opts)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = self.address or "a local instance"
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError("address", f"cannot start Ray on {where}: {msg}") from None
        self._ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = self._requested or max(cpus, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        ray = self._ray
        if ray is None:
            raise RuntimeError("enter the backend before using it")
        remote = ray.remote(num_cpus=1)(fn)
        todo = iter(items)
        pending: list[Any] = []
        for item in todo:
            pending.append(remote.remote(item))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(remote.remote(nxt))
            yield ray.get(ready[0])
