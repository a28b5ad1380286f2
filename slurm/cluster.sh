#!/usr/bin/env bash
# Install and run a single-node Slurm cluster (with accounting) on this machine.
#
#   bash slurm/cluster.sh install   # apt-get the packages (skipped when already there)
#   bash slurm/cluster.sh start     # write configs, start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   bash slurm/cluster.sh up        # install + start
#   bash slurm/cluster.sh status    # daemon states, sinfo, registered clusters
#   bash slurm/cluster.sh stop      # stop the daemons this script started
#
# Needs root. See slurm/README.md for what is configured and the environment variables.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/sbin:/sbin:${PATH}"

BASE="${DPCLUSTER_SLURM_BASE:-/var/tmp/dpcluster-slurm}"
CLUSTER="${DPCLUSTER_SLURM_CLUSTER:-dpcluster}"
PARTITION="debug"
TIMEOUT="${DPCLUSTER_SLURM_TIMEOUT:-90}"
# Site limits, to try a sweep against them: tasks per array (Slurm's default 1001) and the jobs root's association
# may have queued at once (empty: no limit).
MAX_ARRAY_SIZE="${DPCLUSTER_SLURM_MAX_ARRAY_SIZE:-1001}"
MAX_SUBMIT_JOBS="${DPCLUSTER_SLURM_MAX_SUBMIT_JOBS:-}"
SLURM_ETC="/etc/slurm"
SLURM_CONF_FILE="${SLURM_ETC}/slurm.conf"
SLURMDBD_CONF_FILE="${SLURM_ETC}/slurmdbd.conf"
MUNGE_KEY="/etc/munge/munge.key"
DB_NAME="slurm_acct_db"
DB_USER="slurm"
MARIADB_SOCKET="/run/mysqld/mysqld.sock"
MARIADB_PIDFILE="/run/mysqld/mysqld.pid"
MUNGE_PIDFILE="/run/munge/munged.pid"

STATE_DIR="${BASE}/state"
SPOOL_DIR="${BASE}/spool"
LOG_DIR="${BASE}/log"
RUN_DIR="${BASE}/run"
STARTED_DIR="${RUN_DIR}/started"

PACKAGES=(munge mariadb-server mariadb-client slurmdbd slurmctld slurmd slurm-client)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { printf '[cluster.sh] %s\n' "$*" >&2; }

# One-line failure message, then the tail of the logs that explain it.
die() {
    local msg="$1"
    shift
    printf 'cluster.sh: error: %s\n' "$msg" >&2
    local f
    for f in "$@"; do
        if [[ -s "$f" ]]; then
            printf -- '--- last lines of %s ---\n' "$f" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
    exit 1
}

require_root() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages, writes /etc/slurm and starts daemons)"
}

# ---------------------------------------------------------------- processes

# Succeeds when process $1 exists and is not a zombie.
alive() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# pid of a live process named $2 read from pid file $1, or nothing.
pid_from_file() {
    local file="$1" name="$2" pid
    [[ -r "$file" ]] || return 0
    pid="$(tr -dc '0-9' <"$file" 2>/dev/null || true)"
    [[ -n "$pid" ]] || return 0
    if alive "$pid" && [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == "$name" ]]; then
        echo "$pid"
    fi
}

# The pid file each daemon writes itself (slurm daemons: set in the configs below).
daemon_pidfile() {
    case "$1" in
        munged) echo "$MUNGE_PIDFILE" ;;
        mariadbd) echo "$MARIADB_PIDFILE" ;;
        slurmdbd) echo "${RUN_DIR}/slurmdbd.pid" ;;
        slurmctld) echo "${RUN_DIR}/slurmctld.pid" ;;
        slurmd) echo "${RUN_DIR}/slurmd.pid" ;;
    esac
}

daemon_logs() {
    case "$1" in
        munged) echo "${LOG_DIR}/munged.out /var/log/munge/munged.log" ;;
        mariadbd) echo "${LOG_DIR}/mariadbd.log ${LOG_DIR}/mariadbd.out" ;;
        # Run in the foreground, the slurm daemons copy their log to stderr, start-up errors included.
        *) echo "${LOG_DIR}/$1.out" ;;
    esac
}

# pid of the running daemon (the one this script started, else whatever its pid file names).
daemon_pid() {
    local name="$1" pid
    pid="$(pid_from_file "${STARTED_DIR}/${name}" "$name")"
    if [[ -z "$pid" ]]; then
        pid="$(pid_from_file "$(daemon_pidfile "$name")" "$name")"
    fi
    echo "$pid"
}

# Remove pid files that name no live daemon (left behind by a crash or a reboot).
clear_stale_pidfiles() {
    local name="$1" f
    for f in "${STARTED_DIR}/${name}" "$(daemon_pidfile "$name")"; do
        if [[ -e "$f" ]] && [[ -z "$(pid_from_file "$f" "$name")" ]]; then
            log "removing stale pid file $f"
            rm -f "$f"
        fi
    done
}

# Health checks: succeed when the daemon answers.
healthy() {
    case "$1" in
        munged) munge -n 2>/dev/null | unmunge >/dev/null 2>&1 ;;
        mariadbd) mariadb-admin --socket="$MARIADB_SOCKET" --connect-timeout=2 ping >/dev/null 2>&1 ;;
        slurmdbd) timeout 10 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1 ;;
        slurmctld) timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' ;;
        slurmd) timeout 10 scontrol show slurmd 2>/dev/null | grep -q 'Slurmd PID' ;;
    esac
}

# Wait up to $TIMEOUT seconds for a daemon to answer; fail with its log if it dies or never answers.
wait_healthy() {
    local name="$1" pid="${2:-}" i
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        if healthy "$name"; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! alive "$pid"; then
            die "$name exited during start-up" $(daemon_logs "$name")
        fi
        sleep 0.5
    done
    # shellcheck disable=SC2046
    die "$name did not become ready within ${TIMEOUT}s" $(daemon_logs "$name")
}

# Start a daemon in the foreground of its own session, detached from this script's terminal and pipes.
launch() {
    local name="$1"
    shift
    local out="${LOG_DIR}/${name}.out"
    log "starting $name"
    printf '\n==== %s: %s\n' "$(date '+%F %T')" "$*" >>"$out"
    (
        # Close every inherited descriptor but stdio (the start/stop lock, callers' pipes), so the daemon
        # neither holds the lock nor keeps a caller that captures this script's output waiting for EOF.
        local fd
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2)); then
                eval "exec ${fd}>&-" 2>/dev/null || true
            fi
        done
        exec setsid nohup "$@"
    ) </dev/null >>"$out" 2>&1 &
    local pid=$!
    echo "$pid" >"${STARTED_DIR}/${name}"
    echo "$pid"
}

stop_daemon() {
    local name="$1" pid i
    pid="$(pid_from_file "${STARTED_DIR}/${name}" "$name")"
    if [[ -z "$pid" ]]; then
        rm -f "${STARTED_DIR:?}/${name}"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        alive "$pid" || break
        sleep 0.5
    done
    if alive "$pid"; then
        log "$name did not stop within 30s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "${STARTED_DIR:?}/${name}"
    clear_stale_pidfiles "$name"
}

# Bring one daemon up unless it is already running and answering.
# $1 name, $2 "restart" to restart a running one (its config changed), rest: the command line.
ensure_daemon() {
    local name="$1" restart="$2"
    shift 2
    local pid
    clear_stale_pidfiles "$name"
    pid="$(daemon_pid "$name")"
    if [[ -n "$pid" && "$restart" == restart ]]; then
        if [[ -e "${STARTED_DIR}/${name}" ]]; then
            log "$name: configuration changed, restarting"
            stop_daemon "$name"
            pid=""
        else
            log "$name (pid $pid) was not started by this script; its configuration changed: restart it yourself"
        fi
    fi
    if [[ -n "$pid" ]]; then
        # Running: give it time to finish starting, then leave it be.
        wait_healthy "$name" "$pid"
        log "$name already running (pid $pid)"
        return 0
    fi
    if healthy "$name"; then
        log "$name already answering (not started by this script)"
        return 0
    fi
    pid="$(launch "$name" "$@")"
    wait_healthy "$name" "$pid"
    log "$name is up (pid $pid)"
}

# ---------------------------------------------------------------- configuration

# Write $1 from stdin when its content differs; mode $2. Prints "changed" when it wrote.
write_if_changed() {
    local file="$1" mode="$2" tmp
    tmp="$(mktemp "${file}.XXXXXX")"
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        chmod "$mode" "$file"
        return 0
    fi
    if [[ -f "$file" ]] && ! grep -q '^# Written by dpcluster slurm/cluster.sh' "$file"; then
        cp -p "$file" "${file}.orig"
        log "saved the previous $file as ${file}.orig"
    fi
    mv -f "$tmp" "$file"
    echo changed
}

# NodeName line for slurm.conf from `slurmd -C`, with RealMemory lowered to leave headroom.
node_line() {
    local hw cpus boards sockets cores threads mem headroom
    hw="$(slurmd -C 2>/dev/null | head -n 1)" || true
    field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    cpus="$(field CPUs)"
    boards="$(field Boards)"
    sockets="$(field SocketsPerBoard)"
    cores="$(field CoresPerSocket)"
    threads="$(field ThreadsPerCore)"
    mem="$(field RealMemory)"
    if [[ -z "$cpus" || -z "$mem" ]]; then
        cpus="$(nproc)"
        mem="$(free -m | awk '/^Mem:/ {print $2}')"
        boards=1 sockets=1 cores="$cpus" threads=1
    fi
    # Headroom for the daemons and the OS: 5% of memory, at least 512 MiB.
    headroom=$((mem / 20))
    ((headroom < 512)) && headroom=512
    NODE_MEM=$((mem - headroom))
    NODE_CPUS="$cpus"
    echo "NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=${NODE_MEM} State=UNKNOWN"
}

db_password() {
    if [[ -n "${DPCLUSTER_SLURM_DBPASS:-}" ]]; then
        echo "$DPCLUSTER_SLURM_DBPASS"
        return
    fi
    local f="${BASE}/slurmdbd.password"
    if [[ ! -s "$f" ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$f")
    fi
    cat "$f"
}

write_configs() {
    local nodeline defmem
    nodeline="$(node_line)"
    defmem=$((NODE_MEM / NODE_CPUS))
    install -d -m 755 "$SLURM_ETC"

    SLURM_CHANGED="$(write_if_changed "$SLURM_CONF_FILE" 644 <<EOF
# Written by dpcluster slurm/cluster.sh: a single-node cluster with accounting. Rewritten on every start.
ClusterName=${CLUSTER}
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${defmem}
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# Limits set with sacctmgr (on associations and QOS) are enforced, as on a site cluster.
AccountingStorageEnforce=associations,limits,qos
MaxArraySize=${MAX_ARRAY_SIZE}
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
${nodeline}
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    )"

    DBD_CHANGED="$(write_if_changed "$SLURMDBD_CONF_FILE" 600 <<EOF
# Written by dpcluster slurm/cluster.sh: accounting daemon backed by the local MariaDB.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=${RUN_DIR}/slurmdbd.pid
LogFile=${LOG_DIR}/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=${DB_USER}
StoragePass=$(db_password)
StorageLoc=${DB_NAME}
EOF
    )"
    chown root:root "$SLURMDBD_CONF_FILE"
}

# ---------------------------------------------------------------- daemons

start_munged() {
    install -d -m 755 -o munge -g munge /run/munge
    install -d -m 700 -o munge -g munge /var/lib/munge /var/log/munge
    install -d -m 700 -o munge -g munge /etc/munge
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "creating $MUNGE_KEY"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 400 "$MUNGE_KEY"
    ensure_daemon munged no setpriv --reuid=munge --regid=munge --init-groups munged --foreground
}

start_mariadbd() {
    install -d -m 755 -o mysql -g mysql /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        log "initialising the MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"${LOG_DIR}/mariadb-install-db.log" 2>&1 ||
            die "mariadb-install-db failed" "${LOG_DIR}/mariadb-install-db.log"
    fi
    touch "${LOG_DIR}/mariadbd.log"
    chown mysql:mysql "${LOG_DIR}/mariadbd.log"
    ensure_daemon mariadbd no mariadbd --user=mysql --socket="$MARIADB_SOCKET" --pid-file="$MARIADB_PIDFILE" \
        --log-error="${LOG_DIR}/mariadbd.log" --innodb-lock-wait-timeout=900 --innodb-buffer-pool-size=512M
    local pass
    pass="$(db_password)"
    mariadb --socket="$MARIADB_SOCKET" <<EOF || die "could not create the accounting database and user in MariaDB" "${LOG_DIR}/mariadbd.log"
CREATE DATABASE IF NOT EXISTS ${DB_NAME};
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${pass}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${pass}';
GRANT ALL PRIVILEGES ON ${DB_NAME}.* TO '${DB_USER}'@'localhost';
FLUSH PRIVILEGES;
EOF
}

register_cluster() {
    if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        log "registering cluster $CLUSTER in accounting"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null ||
            die "sacctmgr could not add cluster $CLUSTER" "${LOG_DIR}/slurmdbd.out"
    fi
    # Adding a cluster creates the root account and root's association; make sure they are there.
    if ! sacctmgr -n -P show assoc cluster="$CLUSTER" user=root format=user 2>/dev/null | grep -qx root; then
        sacctmgr -i add user root account=root cluster="$CLUSTER" >/dev/null ||
            die "sacctmgr could not add the root user association" "${LOG_DIR}/slurmdbd.out"
    fi
}

# root's MaxSubmitJobs (DPCLUSTER_SLURM_MAX_SUBMIT_JOBS; empty clears it), set live: no restart needed.
set_submit_limit() {
    local want="${MAX_SUBMIT_JOBS:--1}" have
    have="$(sacctmgr -n -P show assoc cluster="$CLUSTER" user=root format=maxsubmit 2>/dev/null | head -n 1)"
    [[ "${have:--1}" == "$want" ]] && return 0
    log "root's association: MaxSubmitJobs=${MAX_SUBMIT_JOBS:-none}"
    sacctmgr -i modify user root where cluster="$CLUSTER" set MaxSubmitJobs="$want" >/dev/null ||
        die "sacctmgr could not set MaxSubmitJobs on root's association" "${LOG_DIR}/slurmdbd.out"
}

node_state() {
    timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true
}

wait_node_idle() {
    local i state resumed=0
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        state="$(node_state)"
        case "$state" in
            idle | mixed | allocated | completing) return 0 ;;
            down | drained | draining | down\* | drained\* | fail | failing)
                if ((resumed == 0)); then
                    log "node $NODE is $state: resuming it"
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 0.5
    done
    local reason
    reason="$(scontrol show node "$NODE" 2>/dev/null | sed -n 's/.*Reason=\(.*\)/\1/p' | head -n 1)"
    die "node $NODE is '${state:-unknown}' not idle after ${TIMEOUT}s${reason:+ (reason: $reason)}" \
        "${LOG_DIR}/slurmd.out" "${LOG_DIR}/slurmctld.out"
}

# ---------------------------------------------------------------- commands

# Serialise concurrent start/stop runs (two test sessions starting the cluster at once).
take_lock() {
    exec 9>"${RUN_DIR}/cluster.lock"
    flock -w "$((TIMEOUT * 6))" 9 || die "another cluster.sh start/stop holds ${RUN_DIR}/cluster.lock"
}

cmd_install() {
    require_root
    local missing=() b
    for b in slurmctld slurmd slurmdbd munged mariadbd sbatch sacctmgr mariadb-admin setpriv; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return 0
    fi
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    install -d -m 755 "$BASE" "$LOG_DIR"
    local apt_log="${LOG_DIR}/apt.log"
    apt-get update -qq >"$apt_log" 2>&1 || die "apt-get update failed" "$apt_log"
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$apt_log" 2>&1 ||
        die "apt-get install failed" "$apt_log"
    for b in slurmctld slurmd slurmdbd munged mariadbd sbatch sacctmgr; do
        command -v "$b" >/dev/null 2>&1 || die "$b is still missing after installing the packages"
    done
    log "packages installed"
}

cmd_start() {
    require_root
    local b
    for b in slurmctld slurmd slurmdbd munged mariadbd; do
        command -v "$b" >/dev/null 2>&1 || die "$b not found: run 'bash slurm/cluster.sh install' first"
    done
    install -d -m 755 "$BASE" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR" "$STARTED_DIR"
    take_lock
    write_configs
    local dbd_restart=no ctl_restart=no
    [[ "$DBD_CHANGED" == changed ]] && dbd_restart=restart
    [[ "$SLURM_CHANGED" == changed ]] && ctl_restart=restart

    start_munged
    start_mariadbd
    ensure_daemon slurmdbd "$dbd_restart" slurmdbd -D
    register_cluster
    ensure_daemon slurmctld "$ctl_restart" slurmctld -D
    ensure_daemon slurmd "$ctl_restart" slurmd -D
    set_submit_limit
    wait_node_idle
    sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER" ||
        die "cluster $CLUSTER is not registered in accounting" "${LOG_DIR}/slurmdbd.out" "${LOG_DIR}/slurmctld.out"
    log "cluster $CLUSTER is up: node $NODE in partition $PARTITION ($(node_state))"
}

cmd_stop() {
    require_root
    local i
    install -d -m 755 "$RUN_DIR" "$STARTED_DIR"
    take_lock
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
    log "stopped"
}

cmd_status() {
    local name pid state rc=0
    for name in "${DAEMONS[@]}"; do
        if ! command -v "$name" >/dev/null 2>&1; then
            state="not installed"
            rc=1
        else
            pid="$(daemon_pid "$name")"
            if healthy "$name"; then
                state="running${pid:+ (pid $pid)}"
            elif [[ -n "$pid" ]]; then
                state="running (pid $pid) but not answering"
                rc=1
            else
                state="stopped"
                rc=1
            fi
        fi
        printf '%-10s %s\n' "$name" "$state"
    done
    if command -v sinfo >/dev/null 2>&1 && healthy slurmctld; then
        echo
        timeout 10 sinfo 2>&1 || true
    fi
    if command -v sacctmgr >/dev/null 2>&1 && healthy slurmdbd; then
        echo
        timeout 10 sacctmgr -n -P show cluster format=cluster 2>&1 | sed 's/^/registered cluster: /' || true
    fi
    return "$rc"
}

NODE="$(hostname -s)"
NODE_MEM=0
NODE_CPUS=1
SLURM_CHANGED=""
DBD_CHANGED=""

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    up)
        cmd_install
        cmd_start
        ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 {install|start|up|stop|status}" >&2
        exit 2
        ;;
esac
