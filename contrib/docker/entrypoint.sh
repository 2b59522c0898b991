#!/bin/sh
# The image's entrypoint: `probe "$@"` (the default command is `daemon`), after two things a
# container gets wrong without saying so:
#   - the config file: /config/probe.toml when it is mounted and PROBE_CONFIG names no other;
#   - the database's directory (that of PROBE_DB, /data by default) must be writable by the
#     probe's account. A named volume is (Docker copies the image's /data, owned by it); a bind
#     mount keeps its owner on the host, often root. Then this script stops with a message
#     saying what to do, exit 2, before the probe writes anything; started as root
#     (`docker run --user 0`), it hands the directory to the account and runs as that.
# PROBE_RUN_AS names the account (default: probe, uid 10001); "root" keeps root.
# PROBE_DEFAULT_CONFIG moves /config/probe.toml (the tests run this script outside an image).
set -eu

run_as=${PROBE_RUN_AS:-probe}
default_config=${PROBE_DEFAULT_CONFIG:-/config/probe.toml}
db=${PROBE_DB:-/data/results.sqlite}

fail() {  # the first line names the script, the others say what to do
    printf 'probe-entrypoint: %s\n' "$1" >&2
    shift
    printf '%s\n' "$@" >&2
    exit 2
}

# The database's file: a path, or an SQLite URL (sqlite:////data/x.sqlite); another URL is a
# server's database, with nothing to check here.
case $db in
    sqlite:///*) path=${db#sqlite:///} ;;
    *://*) path= ;;
    *) path=$db ;;
esac
path=${path%%\?*}

if [ "$(id -u)" = 0 ] && [ "$run_as" != root ]; then
    # Hand the directory and the database's files (the -wal, -shm and lock files too) to the
    # account, then run this script again as it: the checks below are then made as the
    # account that will write, and say what is wrong if handing over failed (a read-only
    # mount, a file system without owners).
    group=$(id -gn -- "$run_as" 2>/dev/null) || fail "PROBE_RUN_AS=$run_as: no such account."
    if [ -n "$path" ]; then
        dir=$(dirname -- "$path")
        mkdir -p -- "$dir" 2>/dev/null || true
        chown -- "$run_as:$group" "$dir" 2>/dev/null || true
        for file in "$path"*; do
            if [ -e "$file" ]; then chown -- "$run_as:$group" "$file" 2>/dev/null || true; fi
        done
    fi
    HOME=$(getent passwd "$run_as" | cut -d: -f6)
    export HOME
    exec setpriv --reuid="$run_as" --regid="$group" --init-groups -- /bin/sh "$0" "$@"
fi

if [ -n "$path" ]; then
    dir=$(dirname -- "$path")
    uid=$(id -u)
    if ! mkdir -p -- "$dir" 2>/dev/null; then
        fail "$dir (the directory of PROBE_DB=$db) does not exist and uid $uid cannot create it." \
            "Mount a volume there:  docker run -v probe-data:$dir ..."
    fi
    # A file made and removed, rather than test -w: access(2) can be wrong about ACLs,
    # user namespaces and some network file systems.
    if ! check=$(mktemp -- "$dir/.probe-write-check.XXXXXX" 2>/dev/null); then
        owner=$(stat -c 'uid %u, mode %a' -- "$dir")
        fail "$dir is not writable by uid $uid (owned by $owner): the probe cannot write its database $path there." \
            "A bind mount keeps the owner the directory has on the host. Either:" \
            "  give it to uid $uid:   sudo chown $uid /path/on/host" \
            "  run as its owner:       docker run --user \"\$(stat -c %u /path/on/host)\" ..." \
            "  start as root, which hands it to $run_as and runs as $run_as:   docker run --user 0 ..." \
            "  or use a named volume:  docker run -v probe-data:$dir ..." \
            "A volume mounted read-only (:ro) cannot hold the database."
    fi
    rm -f -- "$check"
    for file in "$path" "$path-wal" "$path-shm"; do
        if [ -e "$file" ] && [ ! -w "$file" ]; then
            fail "$file is not writable by uid $uid (owned by $(stat -c 'uid %u' -- "$file"))." \
                "Give it to uid $uid (sudo chown $uid FILE on the host), or start the container" \
                "as root (docker run --user 0 ...), which hands it to $run_as and runs as $run_as."
        fi
    done
fi

if [ -z "${PROBE_CONFIG:-}" ] && [ -f "$default_config" ]; then
    PROBE_CONFIG=$default_config
    export PROBE_CONFIG
fi

exec probe "$@"
