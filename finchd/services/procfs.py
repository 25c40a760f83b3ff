"""Process facts of a container read from /proc: stats and top without cgroups.

Rootless containers on cgroup v1 have no cgroup of their own, so finchd measures
what /proc shows: the processes in the container's PID namespace, their CPU time
and resident memory, and the network counters of the container's namespace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from finchd.services.timefmt import now_rfc3339

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NANOSECONDS = 1_000_000_000


def container_pids(init_pid: int) -> list[int]:
    """Return the host PIDs of every process in the PID namespace of init_pid."""
    try:
        namespace = os.readlink(PROC / str(init_pid) / "ns" / "pid")
    except OSError:
        return []
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") == namespace:
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def _cpu_times(pid: int) -> tuple[int, int]:
    """Return (user, system) CPU time of a process in clock ticks."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0, 0
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[11]), int(fields[12])


def _rss_bytes(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def system_cpu_nanoseconds() -> int:
    line = (PROC / "stat").read_text().splitlines()[0]
    return sum(int(value) for value in line.split()[1:]) * NANOSECONDS // CLOCK_TICKS


def network_counters(init_pid: int) -> dict[str, dict[str, int]]:
    """Return Docker's per-interface counters from the container's /proc/net/dev."""
    try:
        lines = (PROC / str(init_pid) / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return {}
    networks = {}
    for line in lines:
        name, _, values = line.partition(":")
        name = name.strip()
        numbers = [int(value) for value in values.split()]
        if name == "lo" or len(numbers) < 12:
            continue
        networks[name] = {
            "rx_bytes": numbers[0], "rx_packets": numbers[1], "rx_errors": numbers[2],
            "rx_dropped": numbers[3], "tx_bytes": numbers[8], "tx_packets": numbers[9],
            "tx_errors": numbers[10], "tx_dropped": numbers[11],
        }
    return networks


def empty_cpu_stats() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": 0, "online_cpus": 0,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def sample(container_id: str, name: str, init_pid: int, memory_limit: int) -> dict[str, Any]:
    """Take one Docker StatsResponse sample. A stopped container gives zeros."""
    pids = container_pids(init_pid) if init_pid else []
    user = system = memory = 0
    for pid in pids:
        pid_user, pid_system = _cpu_times(pid)
        user += pid_user
        system += pid_system
        memory += _rss_bytes(pid)
    cpu = empty_cpu_stats()
    if pids:
        cpu["cpu_usage"] = {
            "total_usage": (user + system) * NANOSECONDS // CLOCK_TICKS,
            "usage_in_kernelmode": system * NANOSECONDS // CLOCK_TICKS,
            "usage_in_usermode": user * NANOSECONDS // CLOCK_TICKS,
        }
        cpu["system_cpu_usage"] = system_cpu_nanoseconds()
        cpu["online_cpus"] = os.cpu_count() or 1
    return {
        "read": now_rfc3339(),
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {"current": len(pids)} if pids else {},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None,
                        "io_time_recursive": None, "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu, "precpu_stats": empty_cpu_stats(),
        "memory_stats": {"usage": memory, "limit": memory_limit, "stats": {}} if pids else {},
        "name": name, "id": container_id,
        "networks": network_counters(init_pid) if pids else {},
    }


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """Keep the rows of `ps` output whose PID column is in pids, as Docker's top does."""
    lines = output.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise ValueError("ps output has no PID column")
    column = titles.index("PID")
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}
