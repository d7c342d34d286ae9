#!/bin/bash
# A backsync campaign over a few machines with GNU parallel and ssh: N
# shards spread over the hosts of $HOSTS (parallel's --sshlogin list,
# `4/user@host1,4/user@host2`: 4 shards at a time on each; `:` is this
# machine), each shard's records copied back here, then merged. `backsync`
# must be on each host's PATH.
#
#   HOSTS=8/alice@a,8/alice@b SHARDS=16 SEEDS=100000 deploy/parallel.sh
#
# The one-liner it runs, for a shell of your own:
#
#   seq 0 15 | parallel -S 8/a,8/b --return shard-{}.jsonl --cleanup \
#     backsync campaign --seeds 100000 --shard {}/16 --jsonl shard-{}.jsonl --resume --shrink 0 -q \
#     '; [ $? -le 1 ]'
#   backsync campaign merge shard-*.jsonl --json campaign.json --keep-failures failures
#
# Settings: HOSTS (default `:`), SHARDS (16), SEEDS (10000), STRATEGY
# (backsync), CAMPAIGN_ARGS (other options of `backsync campaign`), and
# MERGE_ARGS (options of the merge). Exit status: the merge's.
set -euo pipefail
HOSTS=${HOSTS:-:}
SHARDS=${SHARDS:-16}
SEEDS=${SEEDS:-10000}
STRATEGY=${STRATEGY:-backsync}
# A shard's exit 1 is a verdict (the merge reports it), not a failure: only
# an exit above 1 fails its job, which parallel then retries.
seq 0 $((SHARDS - 1)) | parallel --will-cite -S "$HOSTS" --retries 3 \
    --return shard-{}.jsonl --cleanup \
    backsync campaign --seeds "$SEEDS" --strategy "$STRATEGY" --shard {}/"$SHARDS" \
    --jsonl shard-{}.jsonl --resume --shrink 0 --show 0 -q "${CAMPAIGN_ARGS:-}" \
    "; [ \$? -le 1 ]"
# shellcheck disable=SC2086 # MERGE_ARGS is a list of options
exec backsync campaign merge shard-*.jsonl ${MERGE_ARGS:-}
