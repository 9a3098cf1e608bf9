#!/usr/bin/env bash
# Two home LANs behind NAT and a public host, in network namespaces, for the Internet-reach
# tests: real NAT (nftables masquerade), real routing, nothing leaves the namespaces.
#
#   scripts/nat-lab.sh install          install iproute2 and nftables if missing (Debian's
#                                       packages; needs root)
#   scripts/nat-lab.sh up P [B_NAT]     build the lab with namespace prefix P (at most 6
#                                       characters): B_NAT is router B's kind of NAT, "cone"
#                                       (default: ports kept, like most home routers) or
#                                       "symmetric" (a random port per connection)
#   scripts/nat-lab.sh down P           remove it (every namespace, so every link, goes)
#   scripts/nat-lab.sh link P ROUTER up|down
#                                       cut or restore a router's Internet side
#
# The lab, all in the benchmark range 198.18.0.0/15:
#
#   P-pub  198.18.0.10          the public host (a relay)          ┐
#   P-rA   198.18.0.2 | 198.19.1.1   router A, NAT for home A      ├ on bridge br0 in P-inet
#   P-rB   198.18.0.3 | 198.19.2.1   router B, NAT for home B      ┘
#   P-hA   198.19.1.2  behind router A
#   P-hB   198.19.2.2  behind router B
#
# Run a program in a namespace with `ip netns exec P-hA PROGRAM`. Routers drop unsolicited
# inbound connections (as home routers do) rather than answer them with a reset, which is
# what lets two hosts behind cone NATs punch a hole to each other.
set -euo pipefail

need_root() {
    if ((EUID != 0)); then
        echo "nat-lab: needs root (network namespaces and nftables)" >&2
        exit 2
    fi
}

install() {
    need_root
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nft >/dev/null || missing+=(nftables)
    if ((${#missing[@]})); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

up() {
    need_root
    local p=$1 bnat=${2:-cone}
    ((${#p} <= 6)) || { echo "nat-lab: prefix $p is over 6 characters" >&2; exit 2; }
    local n
    for n in inet pub rA rB hA hB; do
        ip netns add "$p-$n"
        ip -n "$p-$n" link set lo up
    done
    ip -n "$p-inet" link add br0 type bridge
    ip -n "$p-inet" link set br0 up
    # wan NS ADDR: NS's Internet side, on the bridge.
    wan() {
        ip link add "$p-$1w" type veth peer name "$p-$1i"
        ip link set "$p-$1w" netns "$p-$1"
        ip link set "$p-$1i" netns "$p-inet"
        ip -n "$p-inet" link set "$p-$1i" master br0
        ip -n "$p-inet" link set "$p-$1i" up
        ip -n "$p-$1" addr add "$2/24" dev "$p-$1w"
        ip -n "$p-$1" link set "$p-$1w" up
    }
    wan pub 198.18.0.10
    wan rA 198.18.0.2
    wan rB 198.18.0.3
    # lan ROUTER HOST N: HOST on 198.19.N.0/24 behind ROUTER.
    lan() {
        ip link add "$p-$2l" type veth peer name "$p-$2r"
        ip link set "$p-$2l" netns "$p-$2"
        ip link set "$p-$2r" netns "$p-$1"
        ip -n "$p-$1" addr add "198.19.$3.1/24" dev "$p-$2r"
        ip -n "$p-$1" link set "$p-$2r" up
        ip -n "$p-$2" addr add "198.19.$3.2/24" dev "$p-$2l"
        ip -n "$p-$2" link set "$p-$2l" up
        ip -n "$p-$2" route add default via "198.19.$3.1"
        ip netns exec "$p-$1" sysctl -qw net.ipv4.ip_forward=1
    }
    lan rA hA 1
    lan rB hB 2
    # nat ROUTER FLAGS: masquerade on its Internet side; drop what nobody inside asked for.
    nat() {
        ip netns exec "$p-$1" nft -f - <<NFT
table ip nat {
    chain post { type nat hook postrouting priority srcnat; oifname "$p-$1w" masquerade $2; }
}
table inet filter {
    chain input { type filter hook input priority 0; iifname "$p-$1w" ct state new drop; }
    chain forward { type filter hook forward priority 0; iifname "$p-$1w" ct state new drop; }
}
NFT
    }
    nat rA ""
    case $bnat in
        cone) nat rB "" ;;
        symmetric) nat rB "random" ;;
        *) echo "nat-lab: unknown NAT kind $bnat (cone or symmetric)" >&2; exit 2 ;;
    esac
}

down() {
    local p=$1 n
    for n in inet pub rA rB hA hB; do
        ip netns del "$p-$n" 2>/dev/null || true
    done
}

link() {
    need_root
    ip -n "$1-$2" link set "$1-$2w" "$3"
}

case "${1:-}" in
    install) install ;;
    up) up "$2" "${3:-cone}" ;;
    down) down "$2" ;;
    link) link "$2" "$3" "$4" ;;
    *)
        sed -n '2,28p' "$0" >&2
        exit 2
        ;;
esac
