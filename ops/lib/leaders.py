"""Prints, for each Kafka node of the cluster at argv[1] (bootstrap servers), one line:
`NODE N partitions: topic[p,...] ...` naming the partitions it leads (internal topics
counted, not listed). For `ops/stack.sh status`."""

import sys
from collections import defaultdict

from confluent_kafka.admin import AdminClient

metadata = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=5)
led = defaultdict(lambda: defaultdict(list))
for name, topic in metadata.topics.items():
    for p in topic.partitions.values():
        led[p.leader][name].append(p.id)
for node in sorted(metadata.brokers):
    topics = led.get(node, {})
    total = sum(len(ps) for ps in topics.values())
    internal = sum(len(ps) for t, ps in topics.items() if t.startswith("_"))
    listed = " ".join(
        f"{t}[{','.join(map(str, sorted(ps)))}]" for t, ps in sorted(topics.items()) if not t.startswith("_")
    )
    print(f"{node} {total} partitions ({internal} internal): {listed or '-'}")
