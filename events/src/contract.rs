//! The event contract as a protobuf descriptor set, and the rules that keep
//! every stored event readable as the contract grows.
//!
//! Events stay in the event store and in Kafka for good, so a schema change
//! may add fields and messages but never change what a stored byte means:
//! a field number keeps its type and cardinality for ever, and a removed
//! field's number is reserved so it is never given another meaning. The
//! snapshot `schemas/proto/frameworks/events/v1.binpb` is the contract as it
//! was last reviewed; a test compares this build's contract with it, as the
//! SDL snapshot does for GraphQL.

use std::collections::BTreeMap;
use std::fmt;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// This build's event contract (`schemas/proto/frameworks/events/v1`), without
/// comments or source positions.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/frameworks.events.v1.binpb"));

/// This build's event contract, decoded.
pub fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(DESCRIPTOR_SET)
        .expect("the build script encodes a valid descriptor set")
}

/// A change that would make a stored event read differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakingChange {
    /// A message stored events may hold is gone.
    MessageRemoved { message: String },
    /// A field is gone and its number is not reserved, so it may be reused.
    FieldRemoved {
        message: String,
        field: String,
        number: i32,
    },
    /// A field number now has another type or cardinality.
    FieldRetyped {
        message: String,
        number: i32,
        was: String,
        now: String,
    },
    /// A number the old contract reserved is in use again.
    ReservedNumberReused {
        message: String,
        field: String,
        number: i32,
    },
    /// An enum stored events may hold is gone.
    EnumRemoved { r#enum: String },
    /// An enum value is gone and its number is not reserved.
    EnumValueRemoved {
        r#enum: String,
        value: String,
        number: i32,
    },
}

impl fmt::Display for BreakingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MessageRemoved { message } => write!(f, "message {message} was removed"),
            Self::FieldRemoved {
                message,
                field,
                number,
            } => write!(
                f,
                "field {message}.{field} = {number} was removed without reserving {number}"
            ),
            Self::FieldRetyped {
                message,
                number,
                was,
                now,
            } => {
                write!(f, "field {number} of {message} was {was} and is now {now}")
            }
            Self::ReservedNumberReused {
                message,
                field,
                number,
            } => write!(
                f,
                "field {message}.{field} reuses {number}, which the contract reserved"
            ),
            Self::EnumRemoved { r#enum } => write!(f, "enum {enum} was removed", enum = r#enum),
            Self::EnumValueRemoved {
                r#enum,
                value,
                number,
            } => write!(
                f,
                "enum value {enum}.{value} = {number} was removed without reserving {number}",
                enum = r#enum
            ),
        }
    }
}

/// What in `now` would read a message written under `was` differently.
/// Additions and renames are not breaking: protobuf's binary form carries
/// numbers and types, never names.
pub fn breaking_changes(was: &FileDescriptorSet, now: &FileDescriptorSet) -> Vec<BreakingChange> {
    let (was_messages, was_enums) = index(was);
    let (now_messages, now_enums) = index(now);
    let mut changes = Vec::new();
    for (name, old) in &was_messages {
        let Some(new) = now_messages.get(name) else {
            changes.push(BreakingChange::MessageRemoved {
                message: name.clone(),
            });
            continue;
        };
        let reserved_before = |n: i32| {
            old.reserved_range
                .iter()
                .any(|r| in_range(n, r.start, r.end))
        };
        let reserved_now = |n: i32| {
            new.reserved_range
                .iter()
                .any(|r| in_range(n, r.start, r.end))
        };
        for field in &old.field {
            let number = field.number();
            match new.field.iter().find(|f| f.number() == number) {
                None if reserved_now(number) => {}
                None => changes.push(BreakingChange::FieldRemoved {
                    message: name.clone(),
                    field: field.name().to_owned(),
                    number,
                }),
                Some(current) => {
                    let (was, now) = (wire_shape(field), wire_shape(current));
                    if was != now {
                        changes.push(BreakingChange::FieldRetyped {
                            message: name.clone(),
                            number,
                            was,
                            now,
                        });
                    }
                }
            }
        }
        for field in &new.field {
            if reserved_before(field.number()) {
                changes.push(BreakingChange::ReservedNumberReused {
                    message: name.clone(),
                    field: field.name().to_owned(),
                    number: field.number(),
                });
            }
        }
    }
    for (name, old) in &was_enums {
        let Some(new) = now_enums.get(name) else {
            changes.push(BreakingChange::EnumRemoved {
                r#enum: name.clone(),
            });
            continue;
        };
        for value in &old.value {
            let number = value.number();
            let kept = new.value.iter().any(|v| v.number() == number)
                || new
                    .reserved_range
                    .iter()
                    .any(|r| number >= r.start() && number <= r.end());
            if !kept {
                changes.push(BreakingChange::EnumValueRemoved {
                    r#enum: name.clone(),
                    value: value.name().to_owned(),
                    number,
                });
            }
        }
    }
    changes
}

/// Message reserved ranges are end-exclusive (enum ranges are inclusive).
fn in_range(number: i32, start: Option<i32>, end: Option<i32>) -> bool {
    number >= start.unwrap_or(0) && number < end.unwrap_or(0)
}

/// What a field number means on the wire: its type (with the message or
/// enum it names) and whether it repeats.
fn wire_shape(field: &prost_types::FieldDescriptorProto) -> String {
    let kind = match field.r#type() {
        Type::Message | Type::Enum | Type::Group => field.type_name().to_owned(),
        scalar => scalar
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    };
    match field.label() {
        Label::Repeated => format!("repeated {kind}"),
        _ => kind,
    }
}

type Index<'a> = (
    BTreeMap<String, &'a DescriptorProto>,
    BTreeMap<String, &'a EnumDescriptorProto>,
);

/// Every message and enum by its full name (`.package.Outer.Inner`).
fn index(set: &FileDescriptorSet) -> Index<'_> {
    fn walk<'a>(scope: &str, message: &'a DescriptorProto, into: &mut Index<'a>) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            walk(&name, nested, into);
        }
        for e in &message.enum_type {
            into.1.insert(format!("{name}.{}", e.name()), e);
        }
        into.0.insert(name, message);
    }
    let mut index = (BTreeMap::new(), BTreeMap::new());
    for file in &set.file {
        let scope = format!(".{}", file.package());
        for message in &file.message_type {
            walk(&scope, message, &mut index);
        }
        for e in &file.enum_type {
            index.1.insert(format!("{scope}.{}", e.name()), e);
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use prost_types::descriptor_proto::ReservedRange;
    use prost_types::enum_descriptor_proto::EnumReservedRange;

    use super::*;

    fn snapshot_path() -> PathBuf {
        // Read at run time: the target dir is shared between clones.
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        crate_dir.join("../schemas/proto/frameworks/events/v1.binpb")
    }

    /// A stored event must read the same under this build. After an
    /// intended, compatible change (a new field, message or event):
    /// `FRAMEWORKS_UPDATE_DESCRIPTORS=1 cargo test -p frameworks-events contract`.
    /// A breaking change is never written to the snapshot.
    #[test]
    fn the_contract_keeps_every_stored_event_readable() {
        let path = snapshot_path();
        let snapshot = std::fs::read(&path).unwrap_or_default();
        let was = FileDescriptorSet::decode(snapshot.as_slice())
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
        let now = descriptor_set();
        let breaking = breaking_changes(&was, &now);
        assert!(
            breaking.is_empty(),
            "breaking changes to stored events (reserve removed numbers, add new fields instead):\n{}",
            breaking
                .iter()
                .map(|c| format!("  - {c}\n"))
                .collect::<String>()
        );
        if std::env::var_os("FRAMEWORKS_UPDATE_DESCRIPTORS").is_some() {
            std::fs::write(&path, DESCRIPTOR_SET).expect("writing the descriptor snapshot");
            return;
        }
        assert!(
            was == now,
            "the event contract differs from {}: review the change and run with FRAMEWORKS_UPDATE_DESCRIPTORS=1",
            path.display()
        );
    }

    /// The stream family's `StreamCreated`, to mutate.
    fn stream_created(set: &mut FileDescriptorSet) -> &mut DescriptorProto {
        set.file
            .iter_mut()
            .filter(|f| f.package() == "frameworks.events.v1.stream")
            .flat_map(|f| f.message_type.iter_mut())
            .find(|m| m.name() == "StreamCreated")
            .expect("StreamCreated is in the contract")
    }

    #[test]
    fn additions_are_not_breaking() {
        let was = descriptor_set();
        let mut now = was.clone();
        let message = stream_created(&mut now);
        let mut added = message.field[0].clone();
        added.name = Some("added_later".into());
        added.number = Some(900);
        message.field.push(added);
        assert_eq!(breaking_changes(&was, &now), []);
    }

    #[test]
    fn a_removed_field_must_leave_its_number_reserved() {
        let was = descriptor_set();
        let mut now = was.clone();
        let removed = stream_created(&mut now).field.remove(0);
        let number = removed.number();
        assert!(matches!(
            breaking_changes(&was, &now).as_slice(),
            [BreakingChange::FieldRemoved { number: n, .. }] if *n == number
        ));
        stream_created(&mut now).reserved_range.push(ReservedRange {
            start: Some(number),
            end: Some(number + 1),
        });
        assert_eq!(breaking_changes(&was, &now), []);
        // Giving the reserved number to a new field breaks it again.
        let mut reused = removed.clone();
        reused.name = Some("reused".into());
        let mut later = now.clone();
        stream_created(&mut later).field.push(reused);
        assert!(matches!(
            breaking_changes(&now, &later).as_slice(),
            [BreakingChange::ReservedNumberReused { .. }]
        ));
    }

    #[test]
    fn a_retyped_or_repeated_field_is_breaking() {
        let was = descriptor_set();
        let mut retyped = was.clone();
        let field = &mut stream_created(&mut retyped).field[0];
        let other = if field.r#type() == Type::Int64 {
            Type::String
        } else {
            Type::Int64
        };
        field.set_type(other);
        field.type_name = None;
        assert!(matches!(
            breaking_changes(&was, &retyped).as_slice(),
            [BreakingChange::FieldRetyped { .. }]
        ));
        let mut repeated = was.clone();
        stream_created(&mut repeated).field[0].set_label(Label::Repeated);
        assert!(matches!(
            breaking_changes(&was, &repeated).as_slice(),
            [BreakingChange::FieldRetyped { .. }]
        ));
    }

    #[test]
    fn a_removed_message_is_breaking_and_a_renamed_field_is_not() {
        let was = descriptor_set();
        let mut renamed = was.clone();
        stream_created(&mut renamed).field[0].name = Some("renamed".into());
        assert_eq!(breaking_changes(&was, &renamed), []);
        let mut removed = was.clone();
        for file in &mut removed.file {
            file.message_type.retain(|m| m.name() != "StreamCreated");
        }
        assert!(matches!(
            breaking_changes(&was, &removed).as_slice(),
            [BreakingChange::MessageRemoved { message }] if message == ".frameworks.events.v1.stream.StreamCreated"
        ));
    }

    #[test]
    fn a_removed_enum_value_must_leave_its_number_reserved() {
        fn ingest_mode(set: &mut FileDescriptorSet) -> &mut EnumDescriptorProto {
            set.file
                .iter_mut()
                .flat_map(|f| f.enum_type.iter_mut())
                .find(|e| e.name() == "IngestMode")
                .expect("IngestMode is in the contract")
        }
        let was = descriptor_set();
        let mut now = was.clone();
        let removed = ingest_mode(&mut now)
            .value
            .pop()
            .expect("IngestMode has values");
        assert!(matches!(
            breaking_changes(&was, &now).as_slice(),
            [BreakingChange::EnumValueRemoved { number, .. }] if *number == removed.number()
        ));
        ingest_mode(&mut now)
            .reserved_range
            .push(EnumReservedRange {
                start: Some(removed.number()),
                end: Some(removed.number()),
            });
        assert_eq!(breaking_changes(&was, &now), []);
    }
}
