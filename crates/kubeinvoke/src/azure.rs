//! Well-known Azure identifiers that clients and clusters expect to see (Azure's values, not
//! ours), kept beneath every module that names them.

/// The AKS AAD server application: the audience of a `clusterToken`, and the server id that
/// kubelogin asks Entra ID for.
pub(crate) const AKS_AAD_SERVER_APP: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// The Azure CLI's public client id, which AKS's kubelogin kubeconfigs name.
pub(crate) const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
