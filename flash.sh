#!/usr/bin/env bash
# flash.sh: provision an open bodycam camera or docking station.
#
#   flash.sh camera --recipient FILE|age1… --dock-key PEM [--dock-key PEM …] [--device-id ID]
#                   [--officer ID] [--audio-device ALSA|none] [--camera-backend picamera2|sim]
#                   [--pins gpio|mock] (--root DIR [--boot DIR] | --ssh [USER@]HOST) [--dry-run]
#   flash.sh dock   [--dock-id ID] [--store DIR|s3://BUCKET[/PREFIX]]
#                   (--root DIR | --ssh [USER@]HOST) [--dry-run]
#   flash.sh office [--store DIR|s3://BUCKET[/PREFIX]] (--root DIR | --ssh [USER@]HOST) [--dry-run]
#                   the evidence office's server: console, daily purge and verify (docs/operations.md)
#   every role: [--wheelhouse DIR]  offline install: the first boot takes the Python packages from
#                   DIR (pip wheel, docs/operations.md) and nothing from the network
#
# --root DIR   a mounted SD card's root filesystem (Raspberry Pi OS); the rest (Debian packages,
#              the Python venv, the spoken cue) is finished by bodycam-install.service at first
#              boot. --boot DIR is its boot partition (default DIR/boot/firmware).
# --root /     on the target itself: everything is installed and started now.
# --ssh HOST   copies this directory to HOST and runs flash.sh there with --root / (sudo).
# --dry-run    prints what would change and changes nothing.
#
# Idempotent: a second run with the same arguments changes nothing; keys are generated once
# and never overwritten. Exit codes: 0 done, 1 failed on the way, 2 bad arguments or an
# unsupported target. Needs bash, GNU tar, gzip, openssl and systemd-sysusers (Debian: systemd).
set -euo pipefail

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/opt/bodycam
PROG=flash.sh

usage() {
    sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'   # the header above
}
bad() { echo "$PROG: error: $*" >&2; echo "Run '$PROG --help' for the options." >&2; exit 2; }
fail() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*"; }

# ---------------------------------------------------------------- arguments
ROLE=""; ROOT=""; BOOT=""; SSH_HOST=""; RECIPIENT=""; DEVICE_ID=""; OFFICER=""; DOCK_ID=""
STORE=""; AUDIO_DEVICE=default; DRY_RUN=0; WHEELHOUSE=""; CAMERA_BACKEND=""; PINS=
DOCK_KEYS=()

[ $# -gt 0 ] || { usage >&2; bad "the first argument must be 'camera', 'dock' or 'office'"; }
case "$1" in
    camera|dock|office) ROLE=$1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) bad "the first argument must be 'camera', 'dock' or 'office', not '$1'" ;;
esac
need_value() { if [ $# -lt 2 ] || [ -z "$2" ]; then bad "$1 needs a value"; fi; }
while [ $# -gt 0 ]; do
    case "$1" in
        --root) need_value "$@"; ROOT=$2; shift 2 ;;
        --boot) need_value "$@"; BOOT=$2; shift 2 ;;
        --ssh) need_value "$@"; SSH_HOST=$2; shift 2 ;;
        --recipient) need_value "$@"; RECIPIENT=$2; shift 2 ;;
        --dock-key) need_value "$@"; DOCK_KEYS+=("$2"); shift 2 ;;
        --device-id) need_value "$@"; DEVICE_ID=$2; shift 2 ;;
        --officer) need_value "$@"; OFFICER=$2; shift 2 ;;
        --audio-device) need_value "$@"; AUDIO_DEVICE=$2; shift 2 ;;
        --dock-id) need_value "$@"; DOCK_ID=$2; shift 2 ;;
        --store) need_value "$@"; STORE=$2; shift 2 ;;
        --wheelhouse) need_value "$@"; WHEELHOUSE=$2; shift 2 ;;
        --camera-backend) need_value "$@"; CAMERA_BACKEND=$2; shift 2 ;;
        --pins) need_value "$@"; PINS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) bad "unknown option '$1'" ;;
    esac
done

[ -n "$ROOT" ] || [ -n "$SSH_HOST" ] || bad "say where to install: --root DIR (a mounted SD card, or / on the target) or --ssh HOST"
[ -z "$ROOT" ] || [ -z "$SSH_HOST" ] || bad "--root and --ssh exclude each other"
[ -z "$BOOT" ] || [ -n "$ROOT" ] || bad "--boot goes with --root"
ID_RE='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
if [ "$ROLE" = camera ]; then
    [ -n "$RECIPIENT" ] || bad "a camera needs --recipient: the evidence office's age1… recipient or its file (bodycam-keys authority)"
    [ ${#DOCK_KEYS[@]} -gt 0 ] || bad "a camera needs --dock-key: the dock's public key PEM (flash.sh dock prints it); repeat for several docks"
    [ -z "$DOCK_ID" ] || bad "--dock-id is for 'flash.sh dock'"
    [ -z "$STORE" ] || bad "--store is for 'flash.sh dock'"
    [ -z "$DEVICE_ID" ] || [[ "$DEVICE_ID" =~ $ID_RE ]] || bad "--device-id '$DEVICE_ID': use 1–64 letters, digits, '.', '_' or '-'"
    [ -z "$OFFICER" ] || [[ "$OFFICER" =~ $ID_RE ]] || bad "--officer '$OFFICER': use 1–64 letters, digits, '.', '_' or '-'"
    [[ "$AUDIO_DEVICE" =~ ^[A-Za-z0-9:=,._-]{1,64}$ ]] || bad "--audio-device '$AUDIO_DEVICE' is not an ALSA device name (arecord -L), or 'none'"
    CAMERA_BACKEND=${CAMERA_BACKEND:-picamera2}
    [[ "$CAMERA_BACKEND" =~ ^(picamera2|sim)$ ]] || bad "--camera-backend '$CAMERA_BACKEND': use 'picamera2' (a Pi's camera) or 'sim' (a bench without one)"
    PINS=${PINS:-gpio}
    [[ "$PINS" =~ ^(gpio|mock)$ ]] || bad "--pins '$PINS': use 'gpio' (a Pi's pins) or 'mock' (a bench without them: the button is pressed through a socket, docs/hardware.md)"
else
    if [ -n "$RECIPIENT$DEVICE_ID$OFFICER$CAMERA_BACKEND$PINS" ] || [ ${#DOCK_KEYS[@]} -gt 0 ] || [ "$AUDIO_DEVICE" != default ]; then
        bad "--recipient, --dock-key, --device-id, --officer, --audio-device, --camera-backend and --pins are for 'flash.sh camera'"
    fi
    [ -z "$BOOT" ] || bad "--boot is for 'flash.sh camera' (the USB gadget)"
    [ "$ROLE" = dock ] || [ -z "$DOCK_ID" ] || bad "--dock-id is for 'flash.sh dock'"
    [ -z "$DOCK_ID" ] || [[ "$DOCK_ID" =~ $ID_RE ]] || bad "--dock-id '$DOCK_ID': use 1–64 letters, digits, '.', '_' or '-'"
    STORE=${STORE:-/srv/evidence}
    if [[ "$STORE" == s3://* ]]; then
        [[ "$STORE" =~ ^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$ ]] || bad "--store '$STORE' is not s3://BUCKET[/PREFIX]"
    else
        # plain characters only: the path goes into TOML and into a unit file (where % is special)
        if [[ ! "$STORE" =~ ^/[A-Za-z0-9._/-]+$ || "$STORE" == *..* ]]; then
            bad "--store must be an absolute path of letters, digits, '.', '_', '-' and '/' (no '..'), or s3://BUCKET[/PREFIX]"
        fi
    fi
fi

for tool in openssl tar gzip sha256sum; do
    command -v "$tool" >/dev/null || fail "'$tool' is missing on this machine (Debian: apt install $tool)"
done

# Input files are checked before anything is touched.
if [ "$ROLE" = camera ]; then
    AGE_RE='^age1[02-9ac-hj-np-z]{58}$'
    if [[ "$RECIPIENT" =~ $AGE_RE ]]; then
        RECIPIENT_VALUE=$RECIPIENT
    elif [ -f "$RECIPIENT" ]; then
        RECIPIENT_VALUE=$(grep -v '^#' "$RECIPIENT" | grep -m1 -oE '^age1[02-9ac-hj-np-z]{58}$' || true)
        [ -n "$RECIPIENT_VALUE" ] || bad "--recipient $RECIPIENT holds no age1… recipient (it must be the .pub file, never the identity)"
    else
        bad "--recipient '$RECIPIENT' is neither an age1… recipient nor a readable file"
    fi
    for pem in "${DOCK_KEYS[@]}"; do
        [ -f "$pem" ] || bad "--dock-key $pem: no such file"
        if ! openssl pkey -pubin -in "$pem" -noout -text 2>/dev/null | grep -q '^ED25519 Public-Key'; then
            bad "--dock-key $pem is not an Ed25519 public key PEM (the dock's dock.pub.pem)"
        fi
    done
fi

# ---------------------------------------------------------------- over ssh
if [ -n "$SSH_HOST" ]; then
    [[ "$SSH_HOST" =~ ^([A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+$ ]] || bad "--ssh '$SSH_HOST' is not [USER@]HOST"
    command -v ssh >/dev/null || fail "'ssh' is missing on this machine (Debian: apt install openssh-client)"
    stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
    remote=/tmp/bodycam-flash
    args=("$ROLE" --root /)
    mkdir -p "$stage/inputs"
    if [ "$ROLE" = camera ]; then
        args+=(--recipient "$RECIPIENT_VALUE")
        i=0
        for pem in "${DOCK_KEYS[@]}"; do
            cp "$pem" "$stage/inputs/dock-$i.pub.pem"; args+=(--dock-key "$remote/inputs/dock-$i.pub.pem"); i=$((i + 1))
        done
        [ -z "$DEVICE_ID" ] || args+=(--device-id "$DEVICE_ID")
        [ -z "$OFFICER" ] || args+=(--officer "$OFFICER")
        args+=(--audio-device "$AUDIO_DEVICE" --camera-backend "$CAMERA_BACKEND" --pins "$PINS")
    else
        [ -z "$DOCK_ID" ] || args+=(--dock-id "$DOCK_ID")
        args+=(--store "$STORE")
    fi
    if [ -n "$WHEELHOUSE" ]; then
        [ -d "$WHEELHOUSE" ] || bad "--wheelhouse $WHEELHOUSE is not a directory (make one: pip wheel -w DIR '.[office,sim]', docs/operations.md)"
        cp -r "$WHEELHOUSE" "$stage/inputs/wheels"; args+=(--wheelhouse "$remote/inputs/wheels")
    fi
    tree=(flash.sh pyproject.toml README.md common device dock evidence simulator deploy docs)
    quoted=$(printf '%q ' "${args[@]}")
    if [ "$DRY_RUN" = 1 ]; then
        note "dry run: would copy ${tree[*]} and the key files to $SSH_HOST:$remote"
        note "dry run: would run there: sudo bash $remote/flash.sh ${quoted}(with --dry-run first if you want to see the changes)"
        exit 0
    fi
    note "copying to $SSH_HOST:$remote"
    # shellcheck disable=SC2029 # $remote and $quoted are meant to expand here, on this side
    { ssh "$SSH_HOST" "rm -rf $remote && mkdir -p $remote" \
        && tar -C "$SELF_DIR" --exclude=__pycache__ --exclude='*.egg-info' -cf - "${tree[@]}" \
           | ssh "$SSH_HOST" "tar -C $remote -xf -" \
        && tar -C "$stage" -cf - inputs | ssh "$SSH_HOST" "tar -C $remote -xf -"; } \
        || fail "could not copy to $SSH_HOST (is it reachable with ssh, and is /tmp writable there?)"
    rc=0
    # shellcheck disable=SC2029
    ssh -t "$SSH_HOST" "sudo bash $remote/flash.sh $quoted; rc=\$?; rm -rf $remote; exit \$rc" || rc=$?
    exit "$rc"
fi

# ---------------------------------------------------------------- into a root filesystem
[ -d "$ROOT" ] || bad "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}          # "" for the running system, so "$R/etc" is /etc
[ -r "$R/etc/os-release" ] || bad "unsupported target: $ROOT/etc/os-release is missing (is it a mounted root filesystem?)"
# read, not sourced: the target's files are data, not code to run here
os_id=$(sed -n 's/^\(ID\|ID_LIKE\)=//p' "$R/etc/os-release" | tr -d '"' | tr '\n' ' ')
[[ " $os_id " == *" debian "* || " $os_id " == *" raspbian "* ]] \
    || bad "unsupported target: $ROOT runs '$os_id'; Raspberry Pi OS or Debian (Bookworm or later) is needed"
[ "$(id -u)" = 0 ] || [ "$DRY_RUN" = 1 ] || fail "run as root (sudo): files on the target belong to root and to the service users"

# What the role needs from Debian (bodycam-install installs it at first boot when missing).
case "$ROLE" in
    camera) DEB_NEEDED="python3-venv alsa-utils libasound2-data espeak-ng"
            [ "$CAMERA_BACKEND" != picamera2 ] || DEB_NEEDED+=" python3-picamera2" ;;
    *) DEB_NEEDED="python3-venv" ;;
esac
deb_installed() {   # PACKAGE: installed in the target's dpkg database
    awk -v p="$1" '$1 == "Package:" { here = ($2 == p) } here && /^Status: install ok installed/ { f = 1 }
        END { exit !f }' "$R/var/lib/dpkg/status" 2>/dev/null
}
# Offline install: everything the first boot needs must already be on the card, or it cannot come up.
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || bad "--wheelhouse $WHEELHOUSE is not a directory (make one: pip wheel -w DIR '.[office,sim]', docs/operations.md)"
    WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
    compgen -G "$WHEELHOUSE/*.whl" >/dev/null || bad "--wheelhouse $WHEELHOUSE holds no wheels (*.whl); make it with: pip wheel -w $WHEELHOUSE '.[office,sim]'"
    missing_debs=""
    for p in $DEB_NEEDED; do deb_installed "$p" || missing_debs+=" $p"; done
    [ -z "$missing_debs" ] || bad "this image lacks what a $ROLE needs offline:$missing_debs (install them into the image first, e.g. chroot $ROOT apt-get install$missing_debs, or flash without --wheelhouse to fetch them at first boot)"
    # the wheels must fit the target's processor and Python (a Pi is aarch64, a PC x86_64)
    target_arch=$(awk '$1 == "Package:" { here = ($2 == "libc6") } here && $1 == "Architecture:" { print $2; exit }' "$R/var/lib/dpkg/status" 2>/dev/null)
    case "$target_arch" in amd64) machine=x86_64 ;; arm64) machine=aarch64 ;; armhf) machine=armv7l ;; *) machine="" ;; esac
    for whl in "$WHEELHOUSE"/*.whl; do
        name=${whl##*/}
        for m in x86_64 aarch64 armv7l i686; do
            if [[ "$name" == *"_$m.whl" || "$name" == *"_$m."* ]] && [ -n "$machine" ] && [ "$m" != "$machine" ]; then
                bad "--wheelhouse: $name is for $m, but $ROOT is $target_arch ($machine); build the wheelhouse on (or for) the target's kind of machine"
            fi
        done
        if [[ "$name" =~ -cp3([0-9]+)-cp3[0-9]+-[a-z] ]] && ! [ -e "$R/usr/bin/python3.${BASH_REMATCH[1]}" ]; then
            bad "--wheelhouse: $name is for Python 3.${BASH_REMATCH[1]}, which $ROOT does not have (ls $ROOT/usr/bin/python3.*); build it with the target's Python version"
        fi
    done
    # room for the wheels and the environment made of them (unpacked, about three times their size)
    need_kb=$(( $(du -sk "$WHEELHOUSE" | cut -f1) * 4 + 65536 ))
    free_kb=$(df -Pk "$ROOT" | awk 'NR == 2 {print $4}')
    [ "$free_kb" -ge "$need_kb" ] || bad "$ROOT has $((free_kb / 1024)) MB free, the offline install needs about $((need_kb / 1024)) MB: use a larger card or image (nothing was changed)"
fi
command -v systemd-sysusers >/dev/null || fail "'systemd-sysusers' is missing on this machine (Debian: apt install systemd)"

CHANGED=0
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

changed() { CHANGED=$((CHANGED + 1)); if [ "$DRY_RUN" = 1 ]; then echo "would $*"; else echo "  $*"; fi; }

# Numeric ids from the *target's* user database (the host's may differ or lack the users).
uid_of() { [ "$1" = root ] && { echo 0; return; }; awk -F: -v n="$1" '$1 == n {print $3}' "$R/etc/passwd" 2>/dev/null; }
gid_of() { [ "$1" = root ] && { echo 0; return; }; awk -F: -v n="$1" '$1 == n {print $3}' "$R/etc/group" 2>/dev/null; }

# fix_meta PATH MODE USER GROUP: owner and mode as given (counted only if they differ).
fix_meta() {
    local path=$1 mode=$2 u g
    u=$(uid_of "$3"); g=$(gid_of "$4")
    if [ -z "$u" ] || [ -z "$g" ]; then
        [ "$DRY_RUN" = 1 ] || fail "user $3 or group $4 is missing in $ROOT/etc/passwd"
        changed "set ${path#"$R"} to $mode $3:$4"; return
    fi
    [ -e "$path" ] || { changed "set ${path#"$R"} to $mode $3:$4"; return; }
    if [ "$(stat -c '%a %u %g' "$path")" != "$mode $u $g" ]; then
        changed "set ${path#"$R"} to $mode $3:$4"
        [ "$DRY_RUN" = 1 ] || { chown -h "$u:$g" "$path"; chmod "$mode" "$path"; }
    fi
}

# put_dir PATH MODE USER GROUP
put_dir() {
    local path=$R$1
    if [ ! -d "$path" ]; then
        changed "create ${1}/"
        [ "$DRY_RUN" = 1 ] && return
        mkdir -p "$path"
    fi
    fix_meta "$path" "$2" "$3" "$4"
}

# put_file SRC PATH MODE USER GROUP: the content of SRC at PATH, replaced atomically if it differs.
put_file() {
    local src=$1 path=$R$2
    if [ ! -f "$path" ] || ! cmp -s "$src" "$path"; then
        changed "$([ -e "$path" ] && echo update || echo install) $2"
        if [ "$DRY_RUN" = 0 ]; then
            if ! { cp "$src" "$path.flash-tmp" && chmod "$3" "$path.flash-tmp" && mv -f "$path.flash-tmp" "$path"; }; then
                rm -f "$path.flash-tmp"
                fail "cannot write $2 into $ROOT (is it full or read-only? df -h $ROOT); nothing half-written was left, run again when fixed"
            fi
        fi
    fi
    if [ "$DRY_RUN" = 0 ] || [ -e "$path" ]; then fix_meta "$path" "$3" "$4" "$5"; fi
}

# put_text PATH MODE USER GROUP <<< content
put_text() { cat > "$TMP/text"; put_file "$TMP/text" "$@"; }

# put_link TARGET PATH
put_link() {
    local path=$R$2
    [ "$(readlink "$path" 2>/dev/null)" = "$1" ] && return
    changed "link $2 -> $1"
    [ "$DRY_RUN" = 1 ] || { mkdir -p "$(dirname "$path")"; ln -sfn "$1" "$path"; }
}

# remove PATH
remove() {
    [ -e "$R$1" ] || [ -L "$R$1" ] || return 0
    changed "remove $1"
    [ "$DRY_RUN" = 1 ] || rm -f "$R$1"
}

toml_string() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

# ---------------------------------------------------------------- common to both roles
case "$ROLE" in
    camera) SVC_USER=bodycam; STATE=/var/lib/bodycam ;;
    dock) SVC_USER=bodycam-dock; STATE=/var/lib/bodycam-dock ;;
    office) SVC_USER=bodycam-office; STATE=/var/lib/bodycam-office ;;
esac

note "provisioning a $ROLE into $ROOT$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing is changed)')"

put_dir /usr/lib/sysusers.d 755 root root
put_file "$SELF_DIR/deploy/sysusers.d/$SVC_USER.conf" "/usr/lib/sysusers.d/$SVC_USER.conf" 644 root root
# users_missing: the user or one of its group memberships from the sysusers.d file is not there yet
users_missing() {
    local kind name group
    while read -r kind name group _; do
        case "$kind" in
            u) [ -n "$(uid_of "$name")" ] || return 0 ;;
            m) awk -F: -v g="$group" -v u="$name" '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) f = 1 }
                   END { exit !f }' "$R/etc/group" 2>/dev/null || return 0 ;;
        esac
    done < "$SELF_DIR/deploy/sysusers.d/$SVC_USER.conf"
    return 1
}
if users_missing; then
    changed "create user $SVC_USER and its group memberships"
    if [ "$DRY_RUN" = 0 ]; then
        systemd-sysusers --root="$ROOT" "$R/usr/lib/sysusers.d/$SVC_USER.conf" >/dev/null \
            || fail "systemd-sysusers could not create the user $SVC_USER in $ROOT"
    fi
fi

# 0751: each role's files keep their own owner and mode; one machine may carry several roles
put_dir /etc/bodycam 751 root root
put_dir "$STATE" 700 "$SVC_USER" "$SVC_USER"
put_dir $PREFIX 755 root root
for d in bin src share; do put_dir "$PREFIX/$d" 755 root root; done
# One machine may carry several roles (a bench, or a small office that is also its dock).
roles=$( { cat "$R$PREFIX/roles" 2>/dev/null || true; [ ! -r "$R$PREFIX/role" ] || cat "$R$PREFIX/role"; echo "$ROLE"; } \
    | grep -xE 'camera|dock|office' | sort -u)
put_text "$PREFIX/roles" 644 root root <<< "$roles"
remove "$PREFIX/role"   # the single-role file of older versions
if [ -n "$WHEELHOUSE" ]; then
    put_dir "$PREFIX/wheels" 755 root root
    declare -A keep_wheels=()
    for whl in "$WHEELHOUSE"/*.whl; do
        name=${whl##*/}
        case "$name" in open_bodycam-*) continue ;; esac   # the project itself comes as source, below
        keep_wheels[$name]=1
        put_file "$whl" "$PREFIX/wheels/$name" 644 root root
    done
    for old_whl in "$R$PREFIX"/wheels/*.whl; do
        [ -e "$old_whl" ] || continue
        [ -n "${keep_wheels[${old_whl##*/}]:-}" ] || remove "$PREFIX/wheels/${old_whl##*/}"
    done
fi
put_file "$SELF_DIR/deploy/bin/bodycam-install" "$PREFIX/bin/bodycam-install" 755 root root
put_file "$SELF_DIR/docs/hardware.md" "$PREFIX/share/hardware.md" 644 root root
put_file "$SELF_DIR/docs/operations.md" "$PREFIX/share/operations.md" 644 root root

# The package as a reproducible source archive (same tree → same bytes, so a rerun changes nothing).
(cd "$SELF_DIR" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=go-w \
    --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' --transform 's,^,open-bodycam/,' \
    -cf - pyproject.toml README.md common device dock evidence simulator) | gzip -n > "$TMP/src.tar.gz"
if [ ! -f "$R$PREFIX/src/open-bodycam.tar.gz" ] || ! cmp -s "$TMP/src.tar.gz" "$R$PREFIX/src/open-bodycam.tar.gz"; then
    remove "$PREFIX/venv/.installed"   # a new version: bodycam-install installs it
fi
put_file "$TMP/src.tar.gz" "$PREFIX/src/open-bodycam.tar.gz" 644 root root

# new_key NAME: an Ed25519 key (PKCS#8 PEM) made once, owned by the service user; public key beside it.
new_key() {
    local key=/etc/bodycam/$1.key pub=/etc/bodycam/$1.pub.pem
    if [ ! -s "$R$key" ]; then
        changed "generate the signing key $key"
        if [ "$DRY_RUN" = 1 ]; then return; fi
        (umask 077 && openssl genpkey -algorithm ed25519 -out "$R$key.flash-tmp" 2>/dev/null) \
            || { rm -f "$R$key.flash-tmp"; fail "openssl could not write an Ed25519 key to $ROOT$key (disk full? OpenSSL 1.1.1 or later is needed)"; }
        sync -f "$R$key.flash-tmp" 2>/dev/null || true
        mv "$R$key.flash-tmp" "$R$key"
    fi
    fix_meta "$R$key" 600 "$SVC_USER" "$SVC_USER"
    openssl pkey -in "$R$key" -pubout -out "$TMP/pub.pem" 2>/dev/null || fail "$ROOT$key is not a readable private key"
    put_file "$TMP/pub.pem" "$pub" 644 root root
}
# fingerprint PEM: SHA-256 of the raw 32-byte public key (as manifests and the dock name signers).
fingerprint() { openssl pkey -pubin -in "$1" -outform DER | tail -c 32 | sha256sum | cut -d' ' -f1; }

put_dir /etc/systemd/system 755 root root
put_dir /etc/systemd/system/multi-user.target.wants 755 root root
enable_unit() {
    put_file "$SELF_DIR/deploy/systemd/$1" "/etc/systemd/system/$1" 644 root root
    put_link "/etc/systemd/system/$1" "/etc/systemd/system/multi-user.target.wants/$1"
}
enable_unit bodycam-install.service

# ---------------------------------------------------------------- camera
if [ "$ROLE" = camera ]; then
    new_key device
    if [ "$DRY_RUN" = 1 ] && [ ! -s "$R/etc/bodycam/device.key" ]; then fp="(new key)"; else fp=$(fingerprint "$R/etc/bodycam/device.pub.pem"); fi
    if [ -z "$DEVICE_ID" ] && [ -r "$R/etc/bodycam/gadget.env" ]; then
        DEVICE_ID=$(sed -n 's/^DEVICE_ID=//p' "$R/etc/bodycam/gadget.env")
    fi
    DEVICE_ID=${DEVICE_ID:-cam-${fp:0:8}}
    [[ "$DEVICE_ID" =~ $ID_RE ]] || DEVICE_ID=cam-new

    put_dir /etc/bodycam/docks 750 root bodycam
    dock_lines=""
    declare -A wanted=()
    for pem in "${DOCK_KEYS[@]}"; do
        name="$(fingerprint "$pem" | cut -c1-16).pub.pem"
        wanted[$name]=1
        openssl pkey -pubin -in "$pem" -out "$TMP/dock.pem" 2>/dev/null
        put_file "$TMP/dock.pem" "/etc/bodycam/docks/$name" 644 root root
        dock_lines+="    $(toml_string "/etc/bodycam/docks/$name"),"$'\n'
    done
    for existing in "$R"/etc/bodycam/docks/*.pub.pem; do
        [ -e "$existing" ] || continue
        [ -n "${wanted[$(basename "$existing")]:-}" ] || remove "/etc/bodycam/docks/$(basename "$existing")"
    done

    put_text /etc/bodycam/bodycam.toml 640 root bodycam <<EOF
# open bodycam camera, written by flash.sh (running it again rewrites this file).
# Every setting and its range: device/config.py; the wiring: $PREFIX/share/hardware.md.

[device]
id = $(toml_string "$DEVICE_ID")
officer_id = $(toml_string "$OFFICER")
key = "/etc/bodycam/device.key"
recipients = [$(toml_string "$RECIPIENT_VALUE")]   # the evidence office; the camera cannot read its own footage
store = "$STATE/store"

[camera]
backend = "$CAMERA_BACKEND"                # picamera2: the Pi's camera; sim: a bench without one
audio = $([ "$AUDIO_DEVICE" = none ] && echo false || echo true)
audio_device = $(toml_string "$([ "$AUDIO_DEVICE" = none ] && echo default || echo "$AUDIO_DEVICE")")   # arecord -L

[cues]
wav = "$STATE/cues/announce.wav"    # rendered with espeak-ng by bodycam-install

[pins]                               # BCM numbers, see the wiring table
button = 17
red = 22
green = 27
amber = 23
buzzer = 18

[link]
port = "/dev/ttyGS0"                 # USB gadget serial (bodycam-gadget.service)
dock_keys = [
$dock_lines]
EOF
    put_text /etc/bodycam/gadget.env 644 root root <<< "DEVICE_ID=$DEVICE_ID"
    put_file "$SELF_DIR/deploy/bin/bodycam-gadget" "$PREFIX/bin/bodycam-gadget" 755 root root
    put_dir /etc/modules-load.d 755 root root
    put_text /etc/modules-load.d/bodycam.conf 644 root root <<'EOF'
# USB gadget serial for the dock link (bodycam-gadget.service)
dwc2
libcomposite
EOF
    enable_unit bodycam-gadget.service
    enable_unit bodycam-device.service
    put_dir /etc/systemd/system/bodycam-device.service.d 755 root root
    if [ "$PINS" = mock ]; then
        # A bench without GPIO: gpiozero's mock pins, the button pressed through a local socket
        # (docs/hardware.md, "A bench without a Pi"); the LEDs' states are in the event log.
        put_text /etc/systemd/system/bodycam-device.service.d/pins.conf 644 root root <<'EOF'
# written by flash.sh camera --pins mock: no GPIO; press the button with bodycam-device --press
[Service]
Environment=GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin
Environment=BODYCAM_BENCH_BUTTON=/run/bodycam/button
RuntimeDirectory=bodycam
RuntimeDirectoryMode=0750
EOF
    else
        remove /etc/systemd/system/bodycam-device.service.d/pins.conf
    fi
    put_link /dev/null /etc/systemd/system/serial-getty@ttyGS0.service   # no login on the dock link

    # The dwc2 overlay lives on the boot partition (its own mount when the card is in a reader).
    BOOT=${BOOT:-$R/boot/firmware}
    [ -f "$BOOT/config.txt" ] || { [ "$BOOT" = "$R/boot/firmware" ] && [ -f "$R/boot/config.txt" ] && BOOT=$R/boot; }
    if [ -f "$BOOT/config.txt" ]; then
        if ! grep -qE '^dtoverlay=dwc2(,|$)' "$BOOT/config.txt"; then
            changed "add dtoverlay=dwc2,dr_mode=peripheral to $BOOT/config.txt"
            if [ "$DRY_RUN" = 0 ]; then
                cp -p "$BOOT/config.txt" "$BOOT/config.txt.flash-tmp"
                printf '\n[all]\n# open bodycam: USB gadget serial for the dock link\ndtoverlay=dwc2,dr_mode=peripheral\n' \
                    >> "$BOOT/config.txt.flash-tmp"
                mv -f "$BOOT/config.txt.flash-tmp" "$BOOT/config.txt"
            fi
        fi
    else
        echo "$PROG: warning: no config.txt in $BOOT: add 'dtoverlay=dwc2,dr_mode=peripheral' to the boot" \
             "partition's config.txt yourself, or run again with --boot DIR" >&2
    fi

# ---------------------------------------------------------------- office
elif [ "$ROLE" = office ]; then
    new_key office
    # Rewritten on every run (it only names places); the credentials live apart and are kept.
    put_text /etc/bodycam/office.env 640 root bodycam-office <<EOF
# open bodycam evidence office, written by flash.sh (running it again rewrites this file).
BODYCAM_STORE=$STORE
BODYCAM_OFFICE_KEY=/etc/bodycam/office.key
BODYCAM_INDEX=$STATE/index
# the office's age identity: placed by the key ceremony (docs/keys.md), never by flash.sh
BODYCAM_IDENTITY=/etc/bodycam/authority.key
EOF
    office_units=(bodycam-console.service bodycam-purge.service bodycam-verify.service)
    for unit in "${office_units[@]}"; do put_dir "/etc/systemd/system/$unit.d" 755 root root; done
    if [[ "$STORE" == s3://* ]]; then
        for unit in "${office_units[@]}"; do remove "/etc/systemd/system/$unit.d/store.conf"; done
        if [ ! -e "$R/etc/bodycam/office-s3.env" ]; then
            put_text /etc/bodycam/office-s3.env 600 root root <<'EOF'
# S3 credentials of the evidence office's identity (docs/s3.md: it may bypass governance
# retention and set legal holds): fill in, then systemctl restart bodycam-console
AWS_ACCESS_KEY_ID=
AWS_SECRET_ACCESS_KEY=
AWS_ENDPOINT_URL=
EOF
        fi
    else
        # shared with a dock on the same server (flash.sh dock): the group bodycam-evidence
        put_dir "$STORE" 2770 root bodycam-evidence
        for unit in "${office_units[@]}"; do
            put_text "/etc/systemd/system/$unit.d/store.conf" 644 root root <<EOF
# written by flash.sh: the filesystem evidence store is the only place the office writes to
[Service]
ReadWritePaths=$STORE
# new folders group-writable: the dock and the office (group bodycam-evidence) share the store
UMask=0007
EOF
        done
    fi
    enable_unit bodycam-console.service
    put_file "$SELF_DIR/deploy/systemd/bodycam-purge.service" /etc/systemd/system/bodycam-purge.service 644 root root
    put_file "$SELF_DIR/deploy/systemd/bodycam-verify.service" /etc/systemd/system/bodycam-verify.service 644 root root
    put_dir /etc/systemd/system/timers.target.wants 755 root root
    for timer in bodycam-purge.timer bodycam-verify.timer; do
        put_file "$SELF_DIR/deploy/systemd/$timer" "/etc/systemd/system/$timer" 644 root root
        put_link "/etc/systemd/system/$timer" "/etc/systemd/system/timers.target.wants/$timer"
    done

# ---------------------------------------------------------------- dock
else
    new_key dock
    if [ -z "$DOCK_ID" ] && [ -r "$R/etc/bodycam/dock.toml" ]; then
        DOCK_ID=$(sed -n 's/^id = "\(.*\)"$/\1/p' "$R/etc/bodycam/dock.toml" | head -n 1)
    fi
    if [ -z "$DOCK_ID" ]; then
        if [ "$DRY_RUN" = 1 ] && [ ! -s "$R/etc/bodycam/dock.pub.pem" ]; then DOCK_ID=dock-new
        else DOCK_ID=dock-$(fingerprint "$R/etc/bodycam/dock.pub.pem" | cut -c1-8); fi
    fi
    put_text /etc/bodycam/dock.toml 640 root bodycam-dock <<EOF
# open bodycam docking station, written by flash.sh (running it again rewrites this file).
# Every setting and its range: dock/config.py.

[dock]
id = $(toml_string "$DOCK_ID")
key = "/etc/bodycam/dock.key"
state = "$STATE"
store = $(toml_string "$STORE")
watch = "/dev/serial/by-id"
EOF
    put_dir /etc/systemd/system/bodycam-dock.service.d 755 root root
    if [[ "$STORE" == s3://* ]]; then
        remove /etc/systemd/system/bodycam-dock.service.d/store.conf
        if [ ! -e "$R/etc/bodycam/dock.env" ]; then
            put_text /etc/bodycam/dock.env 600 root root <<'EOF'
# S3 credentials of the dock's identity (docs/s3.md): fill in, then systemctl restart bodycam-dock
AWS_ACCESS_KEY_ID=
AWS_SECRET_ACCESS_KEY=
AWS_ENDPOINT_URL=
EOF
        fi
    else
        # shared with the office on the same server (flash.sh office): the group bodycam-evidence
        put_dir "$STORE" 2770 root bodycam-evidence
        put_text /etc/systemd/system/bodycam-dock.service.d/store.conf 644 root root <<EOF
# written by flash.sh: the filesystem evidence store is the only place the dock writes to
[Service]
ReadWritePaths=$STORE
# new folders group-writable: the dock and the office (group bodycam-evidence) share the store
UMask=0007
EOF
    fi
    # The cameras' serial driver before the dock starts: the dock's device allow-list
    # (DeviceAllow=char-ttyACM) is resolved when it starts, so a driver loaded later, at the
    # first docking, would leave the dock locked out of it (EPERM; seen on the booted system).
    put_dir /etc/modules-load.d 755 root root
    put_text /etc/modules-load.d/bodycam-dock.conf 644 root root <<'EOF'
# USB serial of docked cameras (bodycam-dock.service)
cdc-acm
EOF
    enable_unit bodycam-dock.service
fi

# ---------------------------------------------------------------- finish
if [ -z "$R" ] && [ "$DRY_RUN" = 0 ]; then
    note "installing packages and the Python environment on this machine"
    "$PREFIX/bin/bodycam-install"
    systemctl daemon-reload
    case "$ROLE" in
        camera) systemctl restart bodycam-gadget.service bodycam-device.service ;;
        dock) systemctl restart bodycam-dock.service ;;
        office) systemctl restart bodycam-console.service bodycam-purge.timer bodycam-verify.timer ;;
    esac
elif [ -n "$R" ]; then
    note "the packages and the Python environment are installed at first boot (bodycam-install.service, needs network)"
fi

echo
if [ "$DRY_RUN" = 1 ]; then
    note "dry run: $CHANGED change(s) would be made"
    exit 0
fi
sync   # a card is pulled from the reader next: everything written must be on it
note "$CHANGED change(s)"
case "$ROLE" in camera) key_name=device ;; *) key_name=$ROLE ;; esac
echo
echo "Public key of this $ROLE ($ROOT/etc/bodycam/$key_name.pub.pem, fingerprint $(fingerprint "$R/etc/bodycam/$key_name.pub.pem")):"
cat "$R/etc/bodycam/$key_name.pub.pem"
if [ "$ROLE" = camera ]; then
    echo "Enrol it at each dock (copy the file there):  bodycam-dock enroll --device-id $DEVICE_ID --key $key_name.pub.pem"
elif [ "$ROLE" = office ]; then
    echo "Register it in the store, once, on this server (NAME: a supervisor's user name, e.g. f.leitung):"
    echo "  sudo -u bodycam-office env \$(grep -v '^#' /etc/bodycam/office.env) $PREFIX/venv/bin/bodycam-evidence init --supervisor NAME --by NAME"
    echo "Then place the office's age identity at /etc/bodycam/authority.key (0640 root:bodycam-office; docs/keys.md)"
    echo "and start the console: systemctl restart bodycam-console"
else
    echo "Give it to every camera: flash.sh camera … --dock-key $key_name.pub.pem"
fi
