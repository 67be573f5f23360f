"""A downstream consumer of chainflow's topics in Python, with Confluent's client: every
record is decoded with confluent-kafka's AvroDeserializer through the Schema Registry (the
writer's schema id is read from each record) and printed as one JSON line, in the form
`chainflow tail` prints (times RFC 3339 UTC with microseconds, dates YYYY-MM-DD).

    pip install 'confluent-kafka[avro]'
    python3 examples/consume.py --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 \\
        market.underlying [--partition 0 --offset 120 --count 10] [--reader-schema FILE]

With --partition and --offset it reads from there, without a consumer group; otherwise
it joins the group `--group` (default `example-python`) and reads from where the group
left off. --reader-schema decodes with that schema (an older or newer version of the
topic's schema: Avro resolution fills in defaults and drops unknown fields)."""
import argparse
import datetime
import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """The JSON form of a decoded value: times and dates as text."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("topic")
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--registry", default="http://127.0.0.1:8081")
    p.add_argument("--group", default="example-python")
    p.add_argument("--partition", type=int)
    p.add_argument("--offset", type=int)
    p.add_argument("--count", type=int, default=10, help="stop after this many records")
    p.add_argument("--reader-schema", help="decode with this schema (a .avsc file)")
    p.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds without a record")
    args = p.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    reader = open(args.reader_schema).read() if args.reader_schema else None
    deserialize = AvroDeserializer(registry, schema_str=reader)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": args.partition is None,
        "auto.offset.reset": "earliest",
    })
    if args.partition is not None:
        consumer.assign([TopicPartition(args.topic, args.partition, args.offset or 0)])
    else:
        consumer.subscribe([args.topic])
    printed = 0
    try:
        while printed < args.count:
            msg = consumer.poll(args.timeout)
            if msg is None:
                print(f"no record within {args.timeout} s", file=sys.stderr)
                return 1
            if msg.error():
                raise SystemExit(f"reading {args.topic}: {msg.error()}")
            value = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            print(json.dumps(plain(value), sort_keys=True), flush=True)
            printed += 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
