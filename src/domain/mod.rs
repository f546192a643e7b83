//! The pure model: identifiers, the tree's kinds and statuses, roles, the module catalogue's
//! rules. No I/O, no diesel, no actix, so everything here is unit-testable and every other layer
//! can depend on it.

pub(crate) mod active;
pub mod address;
pub(crate) mod audit;
pub(crate) mod catalogue;
pub mod ids;
pub(crate) mod mail;
pub mod outbox;
pub(crate) mod plans;
pub(crate) mod quota;
pub mod resource;
pub mod roles;
pub mod settings;
pub(crate) mod status;
pub mod tree;

/// A value that arrived as text and is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of: {expected}")]
pub struct UnknownVariant {
    pub value: String,
    pub expected: &'static str,
}

/// A closed vocabulary spelt as text in the API, the database and the configuration: one spelling
/// per variant, written once. Gives the enum `ALL`, `as_str`, `Display`, `FromStr` (refusing any
/// other spelling with [`UnknownVariant`]) and serde by the same text.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$first_meta:meta])* $first:ident = $first_text:literal
            $(, $(#[$variant_meta:meta])* $variant:ident = $text:literal)* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(#[$first_meta])* $first,
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order (not every vocabulary is listed whole).
            #[allow(dead_code)]
            pub const ALL: &'static [Self] = &[Self::$first $(, Self::$variant)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    Self::$first => $first_text,
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $first_text => Ok(Self::$first),
                    $($text => Ok(Self::$variant),)*
                    _ => Err($crate::domain::UnknownVariant {
                        value: s.to_owned(),
                        expected: concat!($first_text $(, ", ", $text)*),
                    }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use text_enum;
