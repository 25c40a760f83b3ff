"""nerdctl argv and output parsing for networks."""

from __future__ import annotations

import json

from finchd.nerdctl.runner import Runner


class Networks:
    """nerdctl's network commands."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self._gateways: dict[str, str] | None = None

    async def exists(self, name: str) -> bool:
        result = await self.runner.run(["network", "inspect", "--", name], check=False)
        return result.returncode == 0

    async def gateways(self) -> dict[str, str]:
        """Return each network's IPv4 gateway, read once per process."""
        if self._gateways is not None:
            return self._gateways
        result = await self.runner.run(["network", "inspect", "--mode=dockercompat", "--", "bridge"],
                                       check=False)
        gateways: dict[str, str] = {}
        try:
            for network in json.loads(result.stdout or b"[]"):
                for config in (network.get("IPAM") or {}).get("Config") or []:
                    if config.get("Gateway") and "." in config["Gateway"]:
                        gateways[network.get("Name", "bridge")] = config["Gateway"]
        except (json.JSONDecodeError, AttributeError):
            return {}
        if gateways:
            self._gateways = gateways
        return gateways
