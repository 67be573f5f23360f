"""Drives chainflow's Schema Registry with Confluent's own Python client (confluent-kafka),
an implementation not written here.
Usage: registry_client.py URL SUBJECT_PREFIX [USER:PASSWORD CA_FILE]
(with a user and a CA file: basic auth over HTTPS). Exits non-zero, with the failing check,
when the registry does not behave as the client expects."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402

url, prefix = sys.argv[1], sys.argv[2]
settings = {"url": url}
if len(sys.argv) > 4:
    settings["basic.auth.user.info"] = sys.argv[3]
    settings["ssl.ca.location"] = sys.argv[4]
client = SchemaRegistryClient(settings)
subject = f"{prefix}-python-value"

v1 = json.dumps({"type": "record", "name": "Tick", "namespace": "py",
                 "fields": [{"name": "price", "type": "double"}]})
v2 = json.dumps({"type": "record", "name": "Tick", "namespace": "py",
                 "fields": [{"name": "price", "type": "double"},
                            {"name": "venue", "type": ["null", "string"], "default": None}]})
bad = json.dumps({"type": "record", "name": "Tick", "namespace": "py",
                  "fields": [{"name": "price", "type": "string"}]})

id1 = client.register_schema(subject, Schema(v1, "AVRO"))
client.clear_caches()
assert client.register_schema(subject, Schema(v1, "AVRO")) == id1, "same schema, same id"
assert json.loads(client.get_schema(id1).schema_str)["name"] == "Tick"
found = client.lookup_schema(subject, Schema(v1, "AVRO"))
assert (found.schema_id, found.version) == (id1, 1), found
assert client.test_compatibility(subject, Schema(v2, "AVRO")) is True
assert client.test_compatibility(subject, Schema(bad, "AVRO")) is False
id2 = client.register_schema(subject, Schema(v2, "AVRO"))
assert id2 != id1
latest = client.get_latest_version(subject)
assert (latest.schema_id, latest.version) == (id2, 2), latest
assert client.get_versions(subject) == [1, 2]
assert subject in client.get_subjects()
try:
    client.register_schema(subject, Schema(bad, "AVRO"))
    raise AssertionError("an incompatible schema was accepted")
except SchemaRegistryError as e:
    assert e.http_status_code == 409 and e.error_code == 409, (e.http_status_code, e.error_code)
try:
    client.get_version(f"{prefix}-missing", 1)
    raise AssertionError("a missing subject was found")
except SchemaRegistryError as e:
    assert e.error_code == 40401, e.error_code
client.set_compatibility(subject, "FULL")
assert client.get_compatibility(subject) == "FULL"
assert client.delete_subject(subject) == [1, 2]
assert subject not in client.get_subjects()
print("python client: ok")
