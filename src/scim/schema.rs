//! The schemas this server implements (RFC 7643 §4 and §8.7): User, the enterprise User
//! extension and Group. One table drives attribute-name canonicalisation, `caseExact` in filters,
//! mutability in PUT/PATCH, `returned` in projections and the `/Schemas` discovery document, so
//! what `/Schemas` says is what the server does.

use serde_json::{json, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SP_CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
}

#[derive(Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub description: &'static str,
    pub sub: &'static [AttrDef],
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
}

impl AttrDef {
    /// Sub-attribute by name, case-insensitively (RFC 7643 §2.1).
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }
}

const fn a(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
    AttrDef {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        description,
        sub: &[],
        canonical: &[],
        reference_types: &[],
    }
}

const fn s(name: &'static str, description: &'static str) -> AttrDef {
    a(name, AttrType::String, description)
}

impl AttrDef {
    const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }
    const fn sub(mut self, sub: &'static [AttrDef]) -> Self {
        self.sub = sub;
        self
    }
    const fn canonical(mut self, c: &'static [&'static str]) -> Self {
        self.canonical = c;
        self
    }
    const fn refs(mut self, r: &'static [&'static str]) -> Self {
        self.reference_types = r;
        self
    }
}

use AttrType as T;

/// Sub-attributes shared by the plain multi-valued attributes (RFC 7643 §2.4).
const fn mv_sub(
    value_type: AttrType,
    value_desc: &'static str,
    types: &'static [&'static str],
) -> [AttrDef; 4] {
    [
        a("value", value_type, value_desc),
        s(
            "display",
            "A human-readable name, primarily used for display purposes.",
        )
        .mutability(Mutability::ReadWrite),
        s("type", "A label indicating the attribute's function.").canonical(types),
        a(
            "primary",
            T::Boolean,
            "Indicates the primary or preferred value for this attribute.",
        ),
    ]
}

const EMAIL_SUB: [AttrDef; 4] = mv_sub(T::String, "Email address.", &["work", "home", "other"]);
const PHONE_SUB: [AttrDef; 4] = mv_sub(
    T::String,
    "Phone number.",
    &["work", "home", "mobile", "fax", "pager", "other"],
);
const IMS_SUB: [AttrDef; 4] = mv_sub(T::String, "Instant messaging address.", &[]);
const PHOTO_SUB: [AttrDef; 4] = mv_sub(T::Reference, "URL of a photo.", &["photo", "thumbnail"]);
const ROLE_SUB: [AttrDef; 4] = mv_sub(T::String, "The value of a role.", &[]);
const ENTITLEMENT_SUB: [AttrDef; 4] = mv_sub(T::String, "The value of an entitlement.", &[]);
const CERT_SUB: [AttrDef; 4] = mv_sub(T::Binary, "The value of an X.509 certificate.", &[]);

const NAME_SUB: [AttrDef; 6] = [
    s("formatted", "The full name, formatted for display."),
    s("familyName", "The family name of the User."),
    s("givenName", "The given name of the User."),
    s("middleName", "The middle name(s) of the User."),
    s("honorificPrefix", "The honorific prefix(es) of the User."),
    s("honorificSuffix", "The honorific suffix(es) of the User."),
];

const ADDRESS_SUB: [AttrDef; 8] = [
    s(
        "formatted",
        "The full mailing address, formatted for display.",
    ),
    s("streetAddress", "The full street address component."),
    s("locality", "The city or locality component."),
    s("region", "The state or region component."),
    s("postalCode", "The zip code or postal code component."),
    s("country", "The country name component."),
    s("type", "A label indicating the attribute's function.").canonical(&["work", "home", "other"]),
    a(
        "primary",
        T::Boolean,
        "Indicates the primary mailing address.",
    ),
];

const GROUP_REF_SUB: [AttrDef; 4] = [
    s("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
    a(
        "$ref",
        T::Reference,
        "The URI of the corresponding Group resource.",
    )
    .mutability(Mutability::ReadOnly)
    .refs(&["Group"]),
    s("display", "A human-readable name of the group.").mutability(Mutability::ReadOnly),
    s("type", "How the membership was derived.")
        .mutability(Mutability::ReadOnly)
        .canonical(&["direct", "indirect"]),
];

pub const USER_ATTRS: &[AttrDef] = &[
    s(
        "userName",
        "Unique identifier for the User, case-insensitively unique.",
    )
    .required()
    .unique(),
    a(
        "name",
        T::Complex,
        "The components of the user's real name.",
    )
    .sub(&NAME_SUB),
    s(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    s("nickName", "The casual way to address the user."),
    a(
        "profileUrl",
        T::Reference,
        "A fully qualified URL to the User's online profile.",
    )
    .refs(&["external"]),
    s("title", "The user's title, such as \"Vice President\"."),
    s(
        "userType",
        "Used to identify the relationship between the organization and the user.",
    ),
    s(
        "preferredLanguage",
        "Indicates the User's preferred written or spoken language.",
    ),
    s("locale", "Used to indicate the User's default location."),
    s(
        "timezone",
        "The User's time zone in the 'Olson' time zone database format.",
    ),
    a(
        "active",
        T::Boolean,
        "A Boolean value indicating the User's administrative status.",
    ),
    s(
        "password",
        "Accepted and discarded: this server never stores or returns a password.",
    )
    .mutability(Mutability::WriteOnly)
    .returned(Returned::Never),
    a("emails", T::Complex, "Email addresses for the user.")
        .multi()
        .sub(&EMAIL_SUB),
    a("phoneNumbers", T::Complex, "Phone numbers for the User.")
        .multi()
        .sub(&PHONE_SUB),
    a(
        "ims",
        T::Complex,
        "Instant messaging addresses for the User.",
    )
    .multi()
    .sub(&IMS_SUB),
    a("photos", T::Complex, "URLs of photos of the User.")
        .multi()
        .sub(&PHOTO_SUB),
    a(
        "addresses",
        T::Complex,
        "A physical mailing address for this User.",
    )
    .multi()
    .sub(&ADDRESS_SUB),
    a(
        "groups",
        T::Complex,
        "The groups the user belongs to; maintained by the server.",
    )
    .multi()
    .mutability(Mutability::ReadOnly)
    .sub(&GROUP_REF_SUB),
    a(
        "entitlements",
        T::Complex,
        "A list of entitlements for the User.",
    )
    .multi()
    .sub(&ENTITLEMENT_SUB),
    a(
        "roles",
        T::Complex,
        "A list of roles for the User; drives the Portkey organisation role.",
    )
    .multi()
    .sub(&ROLE_SUB),
    a(
        "x509Certificates",
        T::Complex,
        "A list of certificates issued to the User.",
    )
    .multi()
    .sub(&CERT_SUB),
];

const MANAGER_SUB: [AttrDef; 3] = [
    s(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    a(
        "$ref",
        T::Reference,
        "The URI of the SCIM resource representing the User's manager.",
    )
    .refs(&["User"]),
    s("displayName", "The displayName of the User's manager.").mutability(Mutability::ReadOnly),
];

pub const ENTERPRISE_ATTRS: &[AttrDef] = &[
    s(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    s("costCenter", "Identifies the name of a cost center."),
    s("organization", "Identifies the name of an organization."),
    s("division", "Identifies the name of a division."),
    s("department", "Identifies the name of a department."),
    a("manager", T::Complex, "The User's manager.").sub(&MANAGER_SUB),
];

const MEMBER_SUB: [AttrDef; 4] = [
    s("value", "Identifier of the member of this Group.")
        .mutability(Mutability::Immutable)
        .case_exact(),
    a(
        "$ref",
        T::Reference,
        "The URI of the corresponding member resource.",
    )
    .mutability(Mutability::Immutable)
    .refs(&["User"]),
    s("display", "A human-readable name of the member.").mutability(Mutability::ReadOnly),
    s("type", "The type of the member.")
        .mutability(Mutability::Immutable)
        .canonical(&["User"]),
];

pub const GROUP_ATTRS: &[AttrDef] = &[
    s(
        "displayName",
        "A human-readable name for the Group, unique case-insensitively.",
    )
    .required()
    .unique(),
    a(
        "members",
        T::Complex,
        "A list of members of the Group (Users only).",
    )
    .multi()
    .sub(&MEMBER_SUB),
];

/// Attributes every resource has (RFC 7643 §3.1).
const META_SUB: [AttrDef; 5] = [
    s(
        "resourceType",
        "The name of the resource type of the resource.",
    )
    .mutability(Mutability::ReadOnly)
    .case_exact(),
    a(
        "created",
        T::DateTime,
        "The DateTime that the resource was added to the service provider.",
    )
    .mutability(Mutability::ReadOnly),
    a(
        "lastModified",
        T::DateTime,
        "The most recent DateTime that the details of this resource were updated.",
    )
    .mutability(Mutability::ReadOnly),
    a(
        "location",
        T::Reference,
        "The URI of the resource being returned.",
    )
    .mutability(Mutability::ReadOnly)
    .case_exact(),
    s(
        "version",
        "The version of the resource being returned (a weak ETag).",
    )
    .mutability(Mutability::ReadOnly)
    .case_exact(),
];

pub const COMMON_ATTRS: &[AttrDef] = &[
    s(
        "id",
        "Unique identifier for the resource, assigned by the service provider.",
    )
    .mutability(Mutability::ReadOnly)
    .returned(Returned::Always)
    .case_exact()
    .unique(),
    s(
        "externalId",
        "An identifier for the resource as defined by the provisioning client.",
    )
    .case_exact(),
    a("meta", T::Complex, "Resource metadata.")
        .mutability(Mutability::ReadOnly)
        .sub(&META_SUB),
];

#[derive(Debug)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttrDef],
}

pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRS,
};
pub static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRS,
};
pub static GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRS,
};

pub static ALL_SCHEMAS: [&SchemaDef; 3] = [&USER, &ENTERPRISE_USER, &GROUP];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

/// Where an attribute lives in a stored resource: at the top level (core schema and common
/// attributes) or inside the object keyed by an extension URN.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedAttr {
    /// `None` for core and common attributes, the extension URN otherwise.
    pub extension: Option<&'static str>,
    pub def: &'static AttrDef,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "/Users",
            ResourceKind::Group => "/Groups",
        }
    }
    pub fn core(self) -> &'static SchemaDef {
        match self {
            ResourceKind::User => &USER,
            ResourceKind::Group => &GROUP,
        }
    }
    pub fn extensions(self) -> &'static [&'static SchemaDef] {
        static USER_EXT: [&SchemaDef; 1] = [&ENTERPRISE_USER];
        match self {
            ResourceKind::User => &USER_EXT,
            ResourceKind::Group => &[],
        }
    }

    /// Finds an extension schema by URN, case-insensitively.
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions()
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Resolves an attribute name, optionally URN-qualified, case-insensitively.
    /// `urn` may name the core schema (then it is the same as no URN) or an extension.
    pub fn resolve(self, urn: Option<&str>, name: &str) -> Option<ResolvedAttr> {
        let find =
            |attrs: &'static [AttrDef]| attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name));
        match urn {
            None => find(self.core().attributes)
                .or_else(|| find(COMMON_ATTRS))
                .map(|def| ResolvedAttr {
                    extension: None,
                    def,
                }),
            Some(u) if u.eq_ignore_ascii_case(self.core().id) => find(self.core().attributes)
                .or_else(|| find(COMMON_ATTRS))
                .map(|def| ResolvedAttr {
                    extension: None,
                    def,
                }),
            Some(u) => {
                let ext = self.extension(u)?;
                find(ext.attributes).map(|def| ResolvedAttr {
                    extension: Some(ext.id),
                    def,
                })
            }
        }
    }

    /// Splits a possibly URN-qualified attribute name (`urn:…:User:employeeNumber`,
    /// `urn:…:User:name.givenName`) into (URN, rest). The URN is matched against the known schemas
    /// so that the dots inside a URN's version (`2.0`) are not taken as sub-attribute separators.
    pub fn split_urn(self, full: &str) -> (Option<&'static str>, &str) {
        let candidates = std::iter::once(self.core()).chain(self.extensions().iter().copied());
        for schema in candidates {
            let id = schema.id;
            if full.len() > id.len()
                && full.is_char_boundary(id.len())
                && full[..id.len()].eq_ignore_ascii_case(id)
                && full[id.len()..].starts_with(':')
            {
                return (Some(id), &full[id.len() + 1..]);
            }
        }
        (None, full)
    }
}

/// The RFC 7643 §7 representation of one attribute definition.
fn attr_json(def: &AttrDef) -> Value {
    let mut v = json!({
        "name": def.name,
        "type": def.ty.as_str(),
        "multiValued": def.multi,
        "description": def.description,
        "required": def.required,
        "mutability": def.mutability.as_str(),
        "returned": def.returned.as_str(),
    });
    if let Some(obj) = v.as_object_mut() {
        if matches!(def.ty, T::String | T::Reference | T::Binary) {
            obj.insert("caseExact".into(), Value::Bool(def.case_exact));
        }
        if matches!(def.ty, T::String | T::Reference) {
            let u = match def.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
            };
            obj.insert("uniqueness".into(), Value::String(u.into()));
        }
        if !def.canonical.is_empty() {
            obj.insert("canonicalValues".into(), json!(def.canonical));
        }
        if !def.reference_types.is_empty() {
            obj.insert("referenceTypes".into(), json!(def.reference_types));
        }
        if !def.sub.is_empty() {
            obj.insert(
                "subAttributes".into(),
                Value::Array(def.sub.iter().map(attr_json).collect()),
            );
        }
    }
    v
}

/// The `/Schemas/{id}` document for one schema.
pub fn schema_json(schema: &SchemaDef, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base_url}/Schemas/{}", schema.id),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_case_insensitively_and_by_urn() {
        let r = ResourceKind::User.resolve(None, "USERNAME");
        assert_eq!(r.map(|r| r.def.name), Some("userName"));
        let r = ResourceKind::User.resolve(Some(ENTERPRISE_USER_SCHEMA), "EmployeeNumber");
        assert_eq!(
            r.map(|r| (r.extension, r.def.name)),
            Some((Some(ENTERPRISE_USER_SCHEMA), "employeeNumber"))
        );
        assert!(ResourceKind::Group
            .resolve(Some(ENTERPRISE_USER_SCHEMA), "manager")
            .is_none());
        assert_eq!(
            ResourceKind::User.resolve(None, "id").map(|r| r.def.name),
            Some("id")
        );
    }

    #[test]
    fn splits_urn_prefix_with_dots() {
        let (urn, rest) = ResourceKind::User
            .split_urn("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(urn, Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(rest, "manager.value");
        let (urn, rest) = ResourceKind::User.split_urn("name.givenName");
        assert_eq!(urn, None);
        assert_eq!(rest, "name.givenName");
    }
}
