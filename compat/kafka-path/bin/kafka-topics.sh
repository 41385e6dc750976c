#!/usr/bin/env bash
# kafka-topics.sh as librdkafka's test suite runs it (test_kafka_topics: --bootstrap-server,
# --create / --alter / --delete, --topic, --partitions, --replication-factor, --config k=v),
# done with Runnel's own CLI: Java Kafka is not available here. compat/librdkafka-suite points
# the suite's KAFKA_PATH at compat/kafka-path.
set -euo pipefail
BIN=${RUNNEL_BIN:?RUNNEL_BIN names the runnel binary}
action="" topic="" partitions="" rf="" bootstrap=""
configs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bootstrap-server) bootstrap=$2; shift 2 ;;
        --create | --alter | --delete) action=${1#--}; shift ;;
        --topic) topic=$2; shift 2 ;;
        --partitions) partitions=$2; shift 2 ;;
        --replication-factor) rf=$2; shift 2 ;;
        --config) configs+=(--config "$2"); shift 2 ;;
        *) echo "kafka-topics.sh (runnel shim): unsupported argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$topic" ] && [ -n "$bootstrap" ] || { echo "kafka-topics.sh (runnel shim): --topic and --bootstrap-server are required" >&2; exit 2; }
case "$action" in
    create) exec "$BIN" topics create -b "$bootstrap" "$topic" ${partitions:+-p "$partitions"} ${rf:+-r "$rf"} "${configs[@]}" ;;
    alter) exec "$BIN" topics alter -b "$bootstrap" "$topic" -p "$partitions" ;;
    delete) exec "$BIN" topics delete -b "$bootstrap" "$topic" ;;
    *) echo "kafka-topics.sh (runnel shim): one of --create, --alter, --delete" >&2; exit 2 ;;
esac
