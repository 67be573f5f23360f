"""ACLs on the local stack's Apache Kafka, for tests/transactions.rs: denies (or allows
again) WRITE on the transactional ids that start with a prefix, as a managed cluster does
for a client it has not granted transactions. Confluent's Python client makes the call:
rust-rdkafka has no ACL API.

Usage: python3 tests/kafka_acl.py BOOTSTRAP deny|allow PREFIX
"""

import sys

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)


def main() -> None:
    bootstrap, action, prefix = sys.argv[1:4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    pattern = (ResourceType.TRANSACTIONAL_ID, prefix, ResourcePatternType.PREFIXED)
    who = ("User:ANONYMOUS", "*", AclOperation.WRITE, AclPermissionType.DENY)
    if action == "deny":
        futures = admin.create_acls([AclBinding(*pattern, *who)], request_timeout=30)
    elif action == "allow":
        futures = admin.delete_acls([AclBindingFilter(*pattern, *who)], request_timeout=30)
    else:
        sys.exit(f"unknown action {action!r}: deny or allow")
    for future in futures.values():
        future.result()


if __name__ == "__main__":
    main()
