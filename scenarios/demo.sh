#!/usr/bin/env bash
# make demo: two nodes on loopback in a temp dir. node1 adds a repository;
# node2, bootstrapped to node1, learns of it by gossip, fetches it, clones
# it, and pulls a new commit.
set -euo pipefail
menode=${MENODE:-$PWD/cmd/menode/menode}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.invalid
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.invalid
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for PATTERN CMD...: run CMD until its output matches, for up to 10 s.
wait_for() {
	local pattern=$1; shift
	for _ in $(seq 100); do
		if "$@" 2>/dev/null | grep -q -- "$pattern"; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for $pattern from: $*" >&2
	return 1
}

say "node1: identity, then run on 127.0.0.1 (port chosen by the system)"
id1=$("$menode" --root "$dir/n1" auth init)
echo "$id1"
"$menode" --root "$dir/n1" run --alias node1 --addr 127.0.0.1:0 --watch-interval 500ms 2>"$dir/n1.log" &
wait_for '"running": true' "$menode" --root "$dir/n1" status --json
addr1=$("$menode" --root "$dir/n1" status --json | sed -n 's/^ *"\(127\.0\.0\.1:[0-9]*\)"$/\1/p')
echo "listening on $addr1"

say "node2: bootstraps to node1 by DID"
"$menode" --root "$dir/n2" run --alias node2 --addr 127.0.0.1:0 --bootstrap-node "$id1@$addr1" 2>"$dir/n2.log" &
wait_for '"connected": true' "$menode" --root "$dir/n2" peers --json
"$menode" --root "$dir/n2" peers

say "node1: a repository with two branches and a tag"
git init -q -b main "$dir/work"
git -C "$dir/work" commit -q --allow-empty -m first
git -C "$dir/work" branch topic
git -C "$dir/work" tag v1
repo=$("$menode" --root "$dir/n1" repo add --path "$dir/work" --name demo --description 'a demo repository')
echo "$repo"

say "node2: learns of it by gossip and fetches it by itself"
wait_for '"status": "synced"' "$menode" --root "$dir/n2" repo show --repo-id "$repo" --json
"$menode" --root "$dir/n2" repo list

say "node2: clones it from its mirror"
"$menode" --root "$dir/n2" repo clone --repo-id "$repo" --output "$dir/clone"
git -C "$dir/clone" log --oneline --decorate --all

say "node1: a new commit; node2 fetches it, and the clone pulls it"
git -C "$dir/work" commit -q --allow-empty -m second
head=$(git -C "$dir/work" rev-parse main)
wait_for '"has_updates": true' "$menode" --root "$dir/n2" repo show --repo-id "$repo" --json
"$menode" --root "$dir/n2" repo pull --path "$dir/clone"
test "$(git -C "$dir/clone" rev-parse HEAD)" = "$head"
git -C "$dir/clone" log --oneline -1
say "done"
