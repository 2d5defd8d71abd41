//! The shape of a container group's ARM JSON, as the lenient reader needs it: each object's property
//! names as ACI spells them, what kind of value each holds, and which api-versions have it.
//!
//! It describes the serde types of [`crate::arm`] field for field (a unit test deserialises a body
//! built from it), so after [`super::read`] those types see only their own names.

use crate::arm::versions::Feature;

/// What a property holds.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A string; numbers and booleans are converted to one.
    Text,
    /// A double; a string holding one is converted.
    Number,
    /// An integer; a string holding one, or a double without a fraction, is converted.
    Integer,
    /// A boolean; `"true"`/`"false"` in any case are converted.
    Boolean,
    /// An object with these properties.
    Object(&'static [Field]),
    /// An array of these.
    List(&'static Shape),
    /// An object of user-chosen keys (tags, secret files, key-value pairs) whose values are strings.
    TextMap,
    /// Any JSON, passed on as sent: fields Berth refuses when present, whatever their content.
    Opaque,
}

/// Who may write a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every api-version has it.
    Always,
    /// The api-versions with this feature have it; others ignore it.
    Since(Feature),
    /// Read-only: answered by GET, accepted and dropped on input (clients echo GET bodies back).
    ReadOnly,
}

/// One property of an object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub access: Access,
}

const fn f(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        access: Access::Always,
    }
}

const fn since(name: &'static str, shape: Shape, feature: Feature) -> Field {
    Field {
        name,
        shape,
        access: Access::Since(feature),
    }
}

const fn read_only(name: &'static str) -> Field {
    Field {
        name,
        shape: Shape::Opaque,
        access: Access::ReadOnly,
    }
}

const TEXTS: Shape = Shape::List(&Shape::Text);

const ENV: Shape = Shape::List(&Shape::Object(&[
    f("name", Shape::Text),
    f("value", Shape::Text),
    since("secureValue", Shape::Text, Feature::Probes),
    since(
        "secureValueReference",
        Shape::Opaque,
        Feature::SecretReferences,
    ),
]));

const MOUNTS: Shape = Shape::List(&Shape::Object(&[
    f("name", Shape::Text),
    f("mountPath", Shape::Text),
    f("readOnly", Shape::Boolean),
]));

const REQUESTS: Shape = Shape::Object(&[
    f("memoryInGB", Shape::Number),
    f("cpu", Shape::Number),
    since(
        "gpu",
        Shape::Object(&[f("count", Shape::Integer), f("sku", Shape::Text)]),
        Feature::IdentityGpuDns,
    ),
]);

const PROBE: Shape = Shape::Object(&[
    f("exec", Shape::Object(&[f("command", TEXTS)])),
    f(
        "httpGet",
        Shape::Object(&[
            f("path", Shape::Text),
            f("port", Shape::Integer),
            f("scheme", Shape::Text),
            since(
                "httpHeaders",
                Shape::List(&Shape::Object(&[
                    f("name", Shape::Text),
                    f("value", Shape::Text),
                ])),
                Feature::HttpHeaders,
            ),
        ]),
    ),
    f("initialDelaySeconds", Shape::Integer),
    f("periodSeconds", Shape::Integer),
    f("failureThreshold", Shape::Integer),
    f("successThreshold", Shape::Integer),
    f("timeoutSeconds", Shape::Integer),
]);

const SECURITY: Shape = Shape::Object(&[
    f("privileged", Shape::Boolean),
    f("allowPrivilegeEscalation", Shape::Boolean),
    f(
        "capabilities",
        Shape::Object(&[f("add", TEXTS), f("drop", TEXTS)]),
    ),
    f("runAsGroup", Shape::Integer),
    f("runAsUser", Shape::Integer),
    f("seccompProfile", Shape::Text),
]);

const CONTAINER: Shape = Shape::Object(&[
    f("name", Shape::Text),
    f(
        "properties",
        Shape::Object(&[
            f("image", Shape::Text),
            f("command", TEXTS),
            f(
                "ports",
                Shape::List(&Shape::Object(&[
                    since("protocol", Shape::Text, Feature::PortProtocol),
                    f("port", Shape::Integer),
                ])),
            ),
            f("environmentVariables", ENV),
            f(
                "resources",
                Shape::Object(&[f("requests", REQUESTS), f("limits", REQUESTS)]),
            ),
            f("volumeMounts", MOUNTS),
            since("livenessProbe", PROBE, Feature::Probes),
            since("readinessProbe", PROBE, Feature::Probes),
            since("securityContext", SECURITY, Feature::SecurityContext),
            since(
                "configMap",
                Shape::Object(&[f("keyValuePairs", Shape::TextMap)]),
                Feature::Profiles,
            ),
            read_only("instanceView"),
        ]),
    ),
]);

const INIT_CONTAINER: Shape = Shape::Object(&[
    f("name", Shape::Text),
    f(
        "properties",
        Shape::Object(&[
            f("image", Shape::Text),
            f("command", TEXTS),
            f("environmentVariables", ENV),
            f("volumeMounts", MOUNTS),
            since("securityContext", SECURITY, Feature::Priority),
            read_only("instanceView"),
        ]),
    ),
]);

const REGISTRY: Shape = Shape::Object(&[
    f("server", Shape::Text),
    f("username", Shape::Text),
    f("password", Shape::Text),
    since("identity", Shape::Text, Feature::SubnetIds),
    since("identityUrl", Shape::Text, Feature::SubnetIds),
    since(
        "passwordReference",
        Shape::Opaque,
        Feature::SecretReferences,
    ),
]);

const IP_ADDRESS: Shape = Shape::Object(&[
    f(
        "ports",
        Shape::List(&Shape::Object(&[
            f("protocol", Shape::Text),
            f("port", Shape::Integer),
        ])),
    ),
    f("type", Shape::Text),
    f("ip", Shape::Text),
    since("dnsNameLabel", Shape::Text, Feature::DnsNameLabel),
    since(
        "autoGeneratedDomainNameLabelScope",
        Shape::Text,
        Feature::LabelScope,
    ),
    read_only("fqdn"),
]);

const VOLUME: Shape = Shape::Object(&[
    f("name", Shape::Text),
    f(
        "azureFile",
        Shape::Object(&[
            f("shareName", Shape::Text),
            f("readOnly", Shape::Boolean),
            f("storageAccountName", Shape::Text),
            f("storageAccountKey", Shape::Text),
            since(
                "storageAccountKeyReference",
                Shape::Opaque,
                Feature::SecretReferences,
            ),
            since(
                "userManagedIdentityClientId",
                Shape::Opaque,
                Feature::FileShareIdentity,
            ),
        ]),
    ),
    since("emptyDir", Shape::Opaque, Feature::PortProtocol),
    since("secret", Shape::TextMap, Feature::GitRepoAndSecretVolumes),
    since("secretReference", Shape::Opaque, Feature::SecretReferences),
    since(
        "gitRepo",
        Shape::Object(&[
            f("directory", Shape::Text),
            f("repository", Shape::Text),
            f("revision", Shape::Text),
        ]),
        Feature::GitRepoAndSecretVolumes,
    ),
]);

const PROPERTIES: Shape = Shape::Object(&[
    read_only("provisioningState"),
    f("containers", Shape::List(&CONTAINER)),
    since(
        "initContainers",
        Shape::List(&INIT_CONTAINER),
        Feature::InitContainers,
    ),
    f("imageRegistryCredentials", Shape::List(&REGISTRY)),
    f("restartPolicy", Shape::Text),
    f("ipAddress", IP_ADDRESS),
    f("osType", Shape::Text),
    f("volumes", Shape::List(&VOLUME)),
    read_only("instanceView"),
    since("diagnostics", Shape::Opaque, Feature::Probes),
    since("networkProfile", Shape::Opaque, Feature::NetworkProfile),
    since("subnetIds", Shape::Opaque, Feature::SubnetIds),
    since(
        "dnsConfig",
        Shape::Object(&[
            f("nameServers", TEXTS),
            f("searchDomains", Shape::Text),
            f("options", Shape::Text),
        ]),
        Feature::IdentityGpuDns,
    ),
    since("sku", Shape::Text, Feature::InitContainers),
    since(
        "encryptionProperties",
        Shape::Opaque,
        Feature::InitContainers,
    ),
    since("extensions", Shape::Opaque, Feature::Extensions),
    since(
        "confidentialComputeProperties",
        Shape::Opaque,
        Feature::Priority,
    ),
    since("priority", Shape::Text, Feature::Priority),
    since("secretReferences", Shape::Opaque, Feature::SecretReferences),
    since("identityAcls", Shape::Opaque, Feature::IdentityAcls),
    since("containerGroupProfile", Shape::Opaque, Feature::Profiles),
    since("standbyPoolProfile", Shape::Opaque, Feature::Profiles),
    read_only("isCreatedFromStandbyPool"),
    read_only("provisioningTimeoutInSeconds"),
    read_only("isCustomProvisioningTimeout"),
]);

/// A container group: the body of `PUT …/containerGroups/{name}`.
pub const CONTAINER_GROUP: Shape = Shape::Object(&[
    read_only("id"),
    read_only("name"),
    read_only("type"),
    // ARM templates' and ACI YAML files' own envelope; the URL's api-version is the one used.
    read_only("apiVersion"),
    f("location", Shape::Text),
    f("tags", Shape::TextMap),
    since("zones", TEXTS, Feature::Zones),
    since("identity", Shape::Opaque, Feature::IdentityGpuDns),
    read_only("systemData"),
    f("properties", PROPERTIES),
]);
