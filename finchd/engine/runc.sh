#!/bin/sh
# runc for containerd's runc shim, with a fallback for `runc ps` where the
# container has no cgroup.
#
# Rootless containers on a cgroup v1 host run without cgroups, and `runc ps`
# reads a container's processes from its cgroup, so it fails there. When
# containerd 2.0 restarts, it requests the process list of each surviving shim
# and kills a shim that returns none as leaked, which leaves a running container
# without a task. The fallback lists the processes in the PID namespace of the container's
# init process instead.
#
# FINCHD_RUNC is the path of the real runc.
set -eu

real=${FINCHD_RUNC:-/usr/sbin/runc}

is_ps=0
for argument in "$@"; do
    if [ "$argument" = ps ]; then
        is_ps=1
        break
    fi
done
if [ "$is_ps" = 0 ]; then
    exec "$real" "$@"
fi
if output=$("$real" "$@" 2>/dev/null); then
    printf '%s\n' "$output"
    exit 0
fi

# The shim runs `runc --root ROOT [global options] ps --format json ID`.
root=
previous=
container=
for argument in "$@"; do
    case $previous in
        --root) root=$argument ;;
    esac
    case $argument in
        --root=*) root=${argument#--root=} ;;
    esac
    previous=$argument
    container=$argument
done
if [ -z "$root" ]; then
    echo "runc ps: --root is missing from the arguments: $*" >&2
    exit 1
fi

pid=$("$real" --root "$root" state "$container" | sed -n 's/^ *"pid": *\([0-9][0-9]*\),*$/\1/p')
if [ -z "$pid" ] || [ "$pid" = 0 ]; then
    echo "runc ps: container $container has no running init process" >&2
    exit 1
fi

namespace=$(readlink "/proc/$pid/ns/pid")
if [ "$namespace" = "$(readlink /proc/self/ns/pid)" ]; then
    # The container shares the engine's PID namespace (--pid=host), so only its
    # init process is known to belong to it.
    printf '[%s]\n' "$pid"
    exit 0
fi
pids=
for directory in /proc/[0-9]*; do
    if [ "$(readlink "$directory/ns/pid" 2>/dev/null)" = "$namespace" ]; then
        pids="${pids:+$pids,}${directory#/proc/}"
    fi
done
printf '[%s]\n' "$pids"
