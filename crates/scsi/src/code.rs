//! The newtype-with-named-constants pattern used for every SCSI wire value (SAM-5 §5.3 status
//! codes, SPC-5 §4.4 sense keys and additional sense codes, SPC-5 §6 operation codes).
//!
//! Unknown values survive untouched and print as hex, so a peer's odd value can be logged and
//! answered precisely.

/// Defines a `Copy` newtype over an integer with named associated constants, a `name()` lookup
/// and hex-printing `Debug`/`Display` for values the standard does not name.
macro_rules! wire_code {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($int:ty) {
            $( $(#[$cmeta:meta])* $cname:ident = $cval:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        $vis struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: Self = Self($cval); )*

            /// The raw wire value.
            #[inline]
            pub const fn get(self) -> $int {
                self.0
            }

            /// The standard's name for this value, if this crate knows one.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( v if v == $cval => Some(stringify!($cname)), )*
                    _ => None,
                }
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(
                        f,
                        "{}({:#0w$x})",
                        stringify!($name),
                        self.0,
                        w = 2 + 2 * ::core::mem::size_of::<$int>()
                    ),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{:#0w$x}", self.0, w = 2 + 2 * ::core::mem::size_of::<$int>()),
                }
            }
        }

        impl From<$int> for $name {
            #[inline]
            fn from(v: $int) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $int {
            #[inline]
            fn from(v: $name) -> $int {
                v.0
            }
        }
    };
}

pub(crate) use wire_code;
