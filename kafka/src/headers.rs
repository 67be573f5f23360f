//! Kafka record headers: one header's text, and a record's headers copied less some.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// The value of `msg`'s header `name`, when it is text.
pub fn header<'a, M: Message>(msg: &'a M, name: &str) -> Option<&'a str> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The headers of `from` whose names `keep` accepts, in their order.
pub fn copied<H: Headers>(from: Option<&H>, keep: impl Fn(&str) -> bool) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(from.map_or(0, Headers::count) + 2);
    for h in from.into_iter().flat_map(Headers::iter).filter(|h| keep(h.key)) {
        out = out.insert(Header {
            key: h.key,
            value: h.value,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};

    #[test]
    fn headers_are_read_as_text_and_copied_less_those_refused() {
        let hs = OwnedHeaders::new()
            .insert(Header {
                key: "a",
                value: Some("1"),
            })
            .insert(Header {
                key: "b",
                value: Some(&[0xff_u8][..]),
            })
            .insert(Header {
                key: "c",
                value: Some("3"),
            });
        let msg = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(hs.clone()));
        assert_eq!(
            (header(&msg, "a"), header(&msg, "b"), header(&msg, "x")),
            (Some("1"), None, None)
        );
        let kept = copied(Some(&hs), |k| k != "b");
        let names: Vec<&str> = kept.iter().map(|h| h.key).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(copied::<OwnedHeaders>(None, |_| true).count(), 0);
    }
}
