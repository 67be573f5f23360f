"""Produces one record with Confluent's Python client: AvroSerializer with the schema in
FILE (registered under TOPIC-value if new, as a producer of another team would), the value
given as JSON (times as µs numbers). Prints {"partition": P, "offset": O}.
Usage: produce_avro.py BOOTSTRAP REGISTRY TOPIC KEY FILE VALUE_JSON"""
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry, topic, key, schema_file, value = sys.argv[1:7]
serialize = AvroSerializer(SchemaRegistryClient({"url": registry}), open(schema_file).read())
payload = serialize(json.loads(value), SerializationContext(topic, MessageField.VALUE))
delivered = []
producer = Producer({"bootstrap.servers": bootstrap})
producer.produce(topic, key=key.encode(), value=payload,
                 on_delivery=lambda err, msg: delivered.append((err, msg)))
producer.flush(30)
err, msg = delivered[0]
if err is not None:
    raise SystemExit(f"producing to {topic}: {err}")
print(json.dumps({"partition": msg.partition(), "offset": msg.offset()}))
