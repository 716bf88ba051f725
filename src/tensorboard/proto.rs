//! The three protobuf messages an event file holds (TensorBoard's
//! `event.proto` and `summary.proto`), declared with prost's derive so no
//! protoc or build step is needed. Only the fields we write are declared;
//! the field numbers are the wire format and must never change.

/// One record of an event file: a file header, a summary, or a session mark.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The first record of every file: `brain.Event:2`.
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Content", tags = "2, 4")]
    pub content: Option<Content>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Content {
    /// A scalar; TensorBoard stores it as f32.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

/// An encoded image (PNG here) with its size.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// A session mark. `START` at step s tells a reader that the run restarted
/// there, so it drops what an earlier, killed process wrote from s on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `SessionLog.SessionStatus.START`.
pub const SESSION_START: i32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes of a scalar event, written out by hand from the protobuf
    /// wire format: a change to a tag number or a type shows here.
    #[test]
    fn a_scalar_event_has_the_wire_bytes_of_event_proto() {
        let e = Event {
            wall_time: 1.5,
            step: 3,
            what: Some(What::Summary(Summary {
                value: vec![Value {
                    tag: "a".into(),
                    content: Some(Content::SimpleValue(2.0)),
                }],
            })),
        };
        let mut want = vec![0x09]; // field 1, 64-bit
        want.extend(1.5f64.to_le_bytes());
        want.extend([0x10, 3]); // field 2, varint 3
                                // field 5 (summary), length 10: field 1 (value), length 8:
                                // field 1 (tag) "a", then field 2 (simple_value) 32-bit 2.0.
        want.extend([0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15]);
        want.extend(2.0f32.to_le_bytes());
        assert_eq!(e.encode_to_vec(), want);
    }

    #[test]
    fn the_file_version_and_session_start_are_fields_3_and_7() {
        let v = Event {
            wall_time: 0.0,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        };
        let bytes = v.encode_to_vec();
        assert_eq!(&bytes[..2], &[0x1a, 13]);
        assert_eq!(&bytes[2..], b"brain.Event:2");
        let s = Event {
            wall_time: 0.0,
            step: 7,
            what: Some(What::SessionLog(SessionLog {
                status: SESSION_START,
            })),
        };
        assert_eq!(s.encode_to_vec(), vec![0x10, 7, 0x3a, 2, 0x08, 1]);
    }
}
