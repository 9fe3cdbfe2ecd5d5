#!/usr/bin/env bash
# The Docker engine the project's docker targets use (make docker-up / docker-down / image / test-docker).
#
#   engine.sh host ROOT   print the DOCKER_HOST to use: this project's own dockerd when it runs; else the
#                         engine of the current docker context when it answers (a laptop's Docker Desktop,
#                         colima, Docker Engine); else this project's socket (which `up` will start)
#   engine.sh up ROOT     use the engine at $DOCKER_HOST when it answers; else start dockerd here
#   engine.sh down ROOT   stop the dockerd this project started (by its PID file); never any other
#
# ROOT is $(TABPIPE_CACHE)/docker: the daemon's data-root (images and layers), exec-root, socket, PID file
# and log all live there, outside the clone, so a fresh clone on the same machine reuses the same daemon
# and its images. Our dockerd has no bridge network and touches no iptables (--bridge=none ...): only the
# `host` and `none` networks exist, so containers and builds use --network=host.
set -euo pipefail

command=${1:?usage: engine.sh host|up|down ROOT}
root=${2:?usage: engine.sh host|up|down ROOT}
sock="$root/run/docker.sock"
pidfile="$root/run/dockerd.pid"
log="$root/dockerd.log"
own_host="unix://$sock"
up_timeout=${DOCKERD_UP_TIMEOUT:-90}

answers() {  # does an engine answer at $1?
    DOCKER_HOST="$1" timeout 20 docker info >/dev/null 2>&1
}

own_pid() {  # the PID of the dockerd this project started, if it is alive and really ours
    [[ -f $pidfile ]] || return 1
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # A recycled PID is not ours: the live process must be a dockerd with our PID file.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "dockerd .*--pidfile=$pidfile" || return 1
    echo "$pid"
}

case $command in
host)
    if own_pid >/dev/null; then echo "$own_host"; exit 0; fi
    if command -v docker >/dev/null; then
        # docker-py (used by kfp.local's DockerRunner) does not read docker contexts: name the endpoint.
        current=$(env -u DOCKER_HOST docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || true)
        if [[ -n $current ]] && answers "$current"; then echo "$current"; exit 0; fi
    fi
    echo "$own_host"
    ;;
up)
    host=${DOCKER_HOST:-$own_host}
    if command -v docker >/dev/null && answers "$host"; then
        if pid=$(own_pid) && [[ $host == "$own_host" ]]; then
            echo "docker: $host (started earlier by this project, pid $pid; stop: make docker-down)"
        else
            echo "docker: $host (an engine that was already running; not started by this project)"
        fi
        exit 0
    fi
    if [[ $host != "$own_host" ]]; then
        echo "docker: no engine answers at DOCKER_HOST=$host; start it, or unset DOCKER_HOST to let make docker-up start one" >&2
        exit 1
    fi
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "docker: installing Debian's docker.io (dockerd, containerd, runc and the docker CLI)"
            apt-get install -y --no-install-recommends docker.io >/dev/null \
                || { apt-get update >/dev/null && apt-get install -y --no-install-recommends docker.io >/dev/null; }
        else
            echo "docker: no Docker engine answers and dockerd is not installed: install Docker (Desktop or Engine)" >&2
            exit 1
        fi
    fi
    if [[ $EUID -ne 0 ]]; then
        echo "docker: no Docker engine answers, and starting dockerd needs root: start your Docker engine (or run make docker-up as root)" >&2
        exit 1
    fi
    mkdir -p "$root/run" "$root/data" "$root/exec"
    # A PID file left by a dockerd that died would make the new one refuse to start; it is not ours any more.
    if [[ -f $pidfile ]] && ! own_pid >/dev/null; then rm -f "$pidfile"; fi
    started=$(date +%s)
    # setsid: its own process group, so it outlives make; the log keeps its output.
    setsid dockerd \
        --host="$own_host" \
        --data-root="$root/data" \
        --exec-root="$root/exec" \
        --pidfile="$pidfile" \
        --bridge=none --iptables=false --ip-forward=false --ip-masq=false --ip6tables=false \
        >>"$log" 2>&1 </dev/null &
    launched=$!
    until answers "$own_host"; do
        if ! kill -0 "$launched" 2>/dev/null; then
            echo "docker: dockerd exited while starting; the end of its log ($log):" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        if (($(date +%s) - started > up_timeout)); then
            echo "docker: dockerd (pid $launched) did not answer within ${up_timeout}s; see $log" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "docker: $own_host (started now in $(($(date +%s) - started))s, pid $launched, data $root/data, log $log; stop: make docker-down)"
    ;;
down)
    if ! pid=$(own_pid); then
        rm -f "$pidfile"
        echo "docker: no dockerd started by this project is running ($pidfile); nothing stopped"
        exit 0
    fi
    kill -TERM "$pid"
    # dockerd stops its containers (10 s grace each) and its containerd before it exits.
    for _ in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "docker: dockerd (pid $pid) still running 60 s after SIGTERM; see $log" >&2
        exit 1
    fi
    rm -f "$pidfile"
    # dockerd leaves mounts under its own folders (its default network namespace in exec-root);
    # nothing else uses them, and they would keep the folder from being deleted.
    if [[ -r /proc/mounts ]]; then
        grep -F " $root/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r mnt; do
            umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
        done
    fi
    echo "docker: stopped dockerd (pid $pid); images stay in $root/data"
    ;;
*)
    echo "usage: engine.sh host|up|down ROOT" >&2
    exit 2
    ;;
esac
