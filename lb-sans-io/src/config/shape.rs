//! The JSON shape each config type is read from, and nothing else.
//!
//! serde's derived `Deserialize` reads a struct from a JSON array too, by field order, and
//! a unit-only enum from a one-key object (`{"hash": null}`): `["127.0.0.1:1", "hash",
//! [["n", "h:1", 1, null]]]` would be a valid config. A typo-proof config must not have a
//! second, unreadable spelling, so every config struct is read only from a JSON object and
//! every config name (`algorithm`, `type`, `proxy_protocol`) only from a JSON string; any
//! other shape is an error naming the field (`backends[0]: expected an object, got an
//! array`).
//!
//! How: each type derives its serde impls with `#[serde(remote = "Self")]`, which makes
//! them inherent functions, and [`object_only!`] / [`string_only!`] implement the traits
//! by checking the shape first and then calling them. A new config struct or name enum
//! needs the attribute and one line of either macro.

use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A config type read from one JSON shape by its derived (inherent) `deserialize`.
pub(super) trait Derived: Sized {
    /// What to say when the shape is wrong: `config must be a JSON object`, `expected an
    /// object`, `expected a string`.
    const MUST: &'static str;
    /// The derived `deserialize` (with `#[serde(remote = "Self")]`, an inherent function).
    fn derived<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// The error for a value of the wrong JSON type (`got`: `an array`, `null`, ...).
fn got<E: de::Error>(must: &str, got: &str) -> E {
    E::custom(format!("{must}, got {got}"))
}

/// Reads a `T` from a JSON object only.
pub(super) struct ObjectOnly<T>(PhantomData<T>);

impl<T> ObjectOnly<T> {
    pub(super) fn new() -> Self {
        ObjectOnly(PhantomData)
    }
}

impl<'de, T: Derived> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::derived(MapAccessDeserializer::new(map))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(got(T::MUST, "an array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
        Err(got(T::MUST, "a string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Err(got(T::MUST, "a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Err(got(T::MUST, "a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Err(got(T::MUST, "a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Err(got(T::MUST, "a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(got(T::MUST, "null"))
    }
}

/// Reads a `T` (a unit-only enum) from a JSON string only.
pub(super) struct StringOnly<T>(PhantomData<T>);

impl<T> StringOnly<T> {
    pub(super) fn new() -> Self {
        StringOnly(PhantomData)
    }
}

impl<'de, T: Derived> Visitor<'de> for StringOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::derived(StrDeserializer::<E>::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(got(T::MUST, "an object"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(got(T::MUST, "an array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Err(got(T::MUST, "a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Err(got(T::MUST, "a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Err(got(T::MUST, "a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Err(got(T::MUST, "a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(got(T::MUST, "null"))
    }
}

/// `Serialize` and `Deserialize` for a struct deriving them with `#[serde(remote =
/// "Self")]`: read from a JSON object only. `object_only!(Config, "config must be a JSON
/// object")` for the top level; nested types say `expected an object`. `object_only!(read
/// T)` for a type that is only read (it derives `Deserialize` alone).
macro_rules! object_only {
    (read $ty:ty) => {
        impl $crate::config::shape::Derived for $ty {
            const MUST: &'static str = "expected an object";
            fn derived<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::config::shape::ObjectOnly::<$ty>::new())
            }
        }
    };
    (read $ty:ty, $must:literal) => {
        impl $crate::config::shape::Derived for $ty {
            const MUST: &'static str = $must;
            fn derived<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::config::shape::ObjectOnly::<$ty>::new())
            }
        }
    };
    ($ty:ty) => {
        $crate::config::shape::object_only!($ty, "expected an object");
    };
    ($ty:ty, $must:literal) => {
        impl $crate::config::shape::Derived for $ty {
            const MUST: &'static str = $must;
            fn derived<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::config::shape::ObjectOnly::<$ty>::new())
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$ty>::serialize(self, s)
            }
        }
    };
}

/// `Serialize` and `Deserialize` for a unit-only enum deriving them with `#[serde(remote =
/// "Self")]`: read from a JSON string only.
macro_rules! string_only {
    ($ty:ty) => {
        impl $crate::config::shape::Derived for $ty {
            const MUST: &'static str = "expected a string";
            fn derived<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$ty>::deserialize(d)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::config::shape::StringOnly::<$ty>::new())
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$ty>::serialize(self, s)
            }
        }
    };
}

pub(super) use {object_only, string_only};
