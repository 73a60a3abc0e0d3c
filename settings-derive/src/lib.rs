//! `#[derive(Settings)]`: one declaration per setting of a configuration
//! section. The field is the TOML key; its `#[setting(...)]` attribute gives
//! its default and, when it has one, its flag (`--section.key-name`) and
//! environment variable (`<PREFIX>SECTION_KEY_NAME`), both derived from the
//! key unless spelt out; its doc comment is the flag's help.
//!
//! ```text
//! #[derive(Serialize, Deserialize, Settings)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct RedisConfig {
//!     /// Redis URL; the password never appears in labels, logs or errors.
//!     #[setting(flag, value_name = "URL", default = "redis://localhost:6379")]
//!     pub url: String,
//!     /// Bound on connections.
//!     #[setting(section)]
//!     pub limits: Limits,
//! }
//! ```
//!
//! Attributes: `default = EXPR` (a string literal goes through `From<&str>`,
//! a constant through `Into`, an array of literals is collected into the
//! field's list; without it the field takes its type's `Default`), `flag` or `flag = "long.name"`,
//! `env = "VARIABLE"` (with `flag`: the flag's variable when not derived;
//! alone: a setting read from that variable only, as a channel's secrets
//! are), `value_name = "NAME"`, `no_delimiter` (a list flag that is
//! repeated but never split on commas), `section` (a nested section whose
//! own settings are read under this key). On the struct,
//! `#[setting(no_default)]`: the section has required keys, so no
//! `Default` is written (and no flag can show one).
//!
//! The derive writes `impl Default` and `impl llmchat_common::settings::Settings`;
//! what the flags do at run time (clap arguments, the layer they lay over
//! the file) is `llmchat_common::settings`'.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Expr, Fields, LitStr};

#[proc_macro_derive(Settings, attributes(setting))]
pub fn derive_settings(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// What one field's `#[setting(...)]` says.
#[derive(Default)]
struct FieldSetting {
    default: Option<Expr>,
    flag: bool,
    long: Option<LitStr>,
    env: Option<LitStr>,
    value_name: Option<LitStr>,
    no_delimiter: bool,
    section: bool,
}

fn parse_field(field: &syn::Field) -> syn::Result<FieldSetting> {
    let mut s = FieldSetting::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("setting")) {
        attr.parse_nested_meta(|meta| {
            let p = &meta.path;
            if p.is_ident("default") {
                s.default = Some(meta.value()?.parse()?);
            } else if p.is_ident("flag") {
                s.flag = true;
                if meta.input.peek(syn::Token![=]) {
                    s.long = Some(meta.value()?.parse()?);
                }
            } else if p.is_ident("env") {
                s.env = Some(meta.value()?.parse()?);
            } else if p.is_ident("value_name") {
                s.value_name = Some(meta.value()?.parse()?);
            } else if p.is_ident("no_delimiter") {
                s.no_delimiter = true;
            } else if p.is_ident("section") {
                s.section = true;
            } else {
                return Err(meta.error(
                    "unknown setting attribute (default, flag, env, value_name, no_delimiter, section)",
                ));
            }
            Ok(())
        })?;
    }
    let name = field
        .ident
        .as_ref()
        .map(|i| i.to_string())
        .unwrap_or_default();
    if s.section && (s.flag || s.default.is_some()) {
        return Err(syn::Error::new_spanned(
            field,
            format!("{name}: a section has its own settings; no flag or default here"),
        ));
    }
    if !s.flag && (s.value_name.is_some() || s.no_delimiter) {
        return Err(syn::Error::new_spanned(
            field,
            format!("{name}: value_name and no_delimiter describe a flag: add `flag`"),
        ));
    }
    Ok(s)
}

/// The field's doc comment, its lines joined by newlines, each without the
/// one space `///` leaves.
fn doc_of(field: &syn::Field) -> String {
    let lines: Vec<String> = field
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_string())
        .collect();
    lines.join("\n").trim().to_string()
}

/// The field's initial value: the attribute's expression, adapted for the
/// two shorthands, or its type's `Default`.
fn default_value(s: &FieldSetting) -> Tokens {
    match &s.default {
        None => quote! { ::core::default::Default::default() },
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        })) => quote! { ::core::convert::From::from(#lit) },
        Some(Expr::Array(items)) => {
            quote! { #items.into_iter().map(::core::convert::Into::into).collect() }
        }
        // A constant (`DEFAULT_PATTERN: &str` for a `String`).
        Some(Expr::Path(path)) => quote! { ::core::convert::Into::into(#path) },
        Some(other) => quote! { #other },
    }
}

fn opt(lit: &Option<LitStr>) -> Tokens {
    match lit {
        Some(l) => quote! { ::core::option::Option::Some(#l) },
        None => quote! { ::core::option::Option::None },
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(input, "Settings: structs only"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            input,
            "Settings: named fields only",
        ));
    };
    let mut no_default = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("setting")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("no_default") {
                no_default = true;
                Ok(())
            } else {
                Err(meta.error("on a struct: `no_default` only"))
            }
        })?;
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let rt = quote! { ::llmchat_common::settings };
    let mut inits = Vec::new();
    let mut settings = Vec::new();
    let mut env_arms = Vec::new();
    for field in &fields.named {
        let ident = field.ident.as_ref().expect("named field");
        let key = ident.to_string();
        let ty = &field.ty;
        let s = parse_field(field)?;
        if no_default && (s.default.is_some() || s.flag) {
            return Err(syn::Error::new_spanned(
                field,
                format!("{key}: a section without a Default has no defaults and no flags"),
            ));
        }
        let value = default_value(&s);
        inits.push(quote! { #ident: #value });
        let doc = doc_of(field);
        if s.section {
            settings.push(quote! {
                #rt::Setting {
                    key: #key,
                    doc: #doc,
                    default: ::core::option::Option::None,
                    kind: #rt::Kind::Section(<#ty as #rt::Settings>::settings),
                }
            });
        } else if let (false, Some(var)) = (s.flag, &s.env) {
            settings.push(quote! {
                #rt::Setting {
                    key: #key,
                    doc: #doc,
                    default: ::core::option::Option::None,
                    kind: #rt::Kind::Env(#var),
                }
            });
            env_arms.push(quote! {
                #key => {
                    self.#ident = <#ty as #rt::FlagValue>::from_text(text)?;
                }
            });
        } else if s.flag {
            if doc.is_empty() {
                return Err(syn::Error::new_spanned(
                    field,
                    format!("{key}: a flag needs a doc comment, its help"),
                ));
            }
            let long = opt(&s.long);
            let env = opt(&s.env);
            let value_name = match &s.value_name {
                Some(v) => quote! { #v },
                None => quote! { <#ty as #rt::FlagValue>::VALUE_NAME },
            };
            let shape = if s.no_delimiter {
                quote! { #rt::Shape::List { split: false } }
            } else {
                quote! { <#ty as #rt::FlagValue>::SHAPE }
            };
            settings.push(quote! {
                #rt::Setting {
                    key: #key,
                    doc: #doc,
                    default: <#ty as #rt::FlagValue>::show(&defaults.#ident),
                    kind: #rt::Kind::Flag(#rt::Flag {
                        long: #long,
                        env: #env,
                        value_name: #value_name,
                        shape: #shape,
                        parse: <#ty as #rt::FlagValue>::parse,
                    }),
                }
            });
        }
    }
    let default_impl = if no_default {
        quote! {}
    } else {
        quote! {
            impl #impl_generics ::core::default::Default for #name #ty_generics #where_clause {
                fn default() -> Self {
                    Self { #( #inits, )* }
                }
            }
        }
    };
    let defaults = if no_default {
        quote! {}
    } else {
        quote! {
            #[allow(unused_variables)]
            let defaults = <Self as ::core::default::Default>::default();
        }
    };
    Ok(quote! {
        #default_impl

        impl #impl_generics #rt::Settings for #name #ty_generics #where_clause {
            fn settings() -> ::std::vec::Vec<#rt::Setting> {
                #defaults
                ::std::vec![ #( #settings, )* ]
            }

            fn set_from_env(
                &mut self,
                key: &str,
                text: &str,
            ) -> ::core::result::Result<(), #rt::FlagValueError> {
                #[allow(clippy::match_single_binding)]
                match key {
                    #( #env_arms )*
                    _ => {}
                }
                let _ = text;
                ::core::result::Result::Ok(())
            }
        }
    })
}
