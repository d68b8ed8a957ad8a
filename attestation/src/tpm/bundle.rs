//! The TPM manufacturers' EK CA certificates shipped with Tether (`attestation/bundles/tpm/`):
//! roots and the intermediates vendors publish, per vendor, with a manifest naming each file's
//! source and SHA-256. Intermediates are anchors too, so an EK certificate read alone from NV
//! (without its issuing CA) still chains.

use ring::digest;

use crate::trust::{TrustError, TrustStore};

/// Vendor ids of the bundle: AMD, Infineon, Intel, Microsoft (Pluton), Nuvoton, STMicro.
pub const VENDORS: [&str; 6] = ["amd", "ifx", "intc", "msft", "ntc", "stm"];

/// The manifest (JSON): per certificate its vendor, file, subject, SHA-256 and source.
pub const MANIFEST_JSON: &str = include_str!("../../bundles/tpm/manifest.json");

/// One certificate of the bundle.
#[derive(Debug, Clone, Copy)]
pub struct BundleCertificate {
    pub vendor: &'static str,
    /// Path under `attestation/bundles/tpm/`, as the manifest names it.
    pub file: &'static str,
    pub pem: &'static str,
}

const CERTIFICATES: &[BundleCertificate] = &[
    BundleCertificate {
        vendor: "amd",
        file: "amd/AMDTPM_ECC.pem",
        pem: include_str!("../../bundles/tpm/amd/AMDTPM_ECC.pem"),
    },
    BundleCertificate {
        vendor: "amd",
        file: "amd/AMDTPM_RSA.pem",
        pem: include_str!("../../bundles/tpm/amd/AMDTPM_RSA.pem"),
    },
    BundleCertificate {
        vendor: "amd",
        file: "amd/AMD_Pluton_Global_Factory_ICA.pem",
        pem: include_str!("../../bundles/tpm/amd/AMD_Pluton_Global_Factory_ICA.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/IFX_TPM_EK_Intermediate_CA_20__73a42ded.pem",
        pem: include_str!("../../bundles/tpm/ifx/IFX_TPM_EK_Intermediate_CA_20__73a42ded.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/IFX_TPM_EK_Root_CA__7df2c375.pem",
        pem: include_str!("../../bundles/tpm/ifx/IFX_TPM_EK_Root_CA__7df2c375.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/Infineon_OPTIGA_TM_ECC_Manufacturing_CA_035__6604c0c0.pem",
        pem: include_str!("../../bundles/tpm/ifx/Infineon_OPTIGA_TM_ECC_Manufacturing_CA_035__6604c0c0.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/Infineon_OPTIGA_TM_ECC_Root_CA__cfeb02fe.pem",
        pem: include_str!("../../bundles/tpm/ifx/Infineon_OPTIGA_TM_ECC_Root_CA__cfeb02fe.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/Infineon_OPTIGA_TM_RSA_Manufacturing_CA_029__26203ada.pem",
        pem: include_str!("../../bundles/tpm/ifx/Infineon_OPTIGA_TM_RSA_Manufacturing_CA_029__26203ada.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/Infineon_OPTIGA_TM_RSA_Manufacturing_CA_035__6b8b6216.pem",
        pem: include_str!("../../bundles/tpm/ifx/Infineon_OPTIGA_TM_RSA_Manufacturing_CA_035__6b8b6216.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/Infineon_OPTIGA_TM_RSA_Root_CA__899e3547.pem",
        pem: include_str!("../../bundles/tpm/ifx/Infineon_OPTIGA_TM_RSA_Root_CA__899e3547.pem"),
    },
    BundleCertificate {
        vendor: "ifx",
        file: "ifx/VeriSign_Trusted_Platform_Module_Root_CA__967bb3d4.pem",
        pem: include_str!("../../bundles/tpm/ifx/VeriSign_Trusted_Platform_Module_Root_CA__967bb3d4.pem"),
    },
    BundleCertificate {
        vendor: "intc",
        file: "intc/OnDie_CA_RootCA.pem",
        pem: include_str!("../../bundles/tpm/intc/OnDie_CA_RootCA.pem"),
    },
    BundleCertificate {
        vendor: "intc",
        file: "intc/TPM_EK_intermediate_for_GLK_EPID_PROD_pid_7__291f8cd7.pem",
        pem: include_str!("../../bundles/tpm/intc/TPM_EK_intermediate_for_GLK_EPID_PROD_pid_7__291f8cd7.pem"),
    },
    BundleCertificate {
        vendor: "intc",
        file: "intc/TPM_EK_intermediate_for_SPTH_EPID_PROD__e365738e.pem",
        pem: include_str!("../../bundles/tpm/intc/TPM_EK_intermediate_for_SPTH_EPID_PROD__e365738e.pem"),
    },
    BundleCertificate {
        vendor: "intc",
        file: "intc/TPM_EK_root_cert_signing__2e1b3ba7.pem",
        pem: include_str!("../../bundles/tpm/intc/TPM_EK_root_cert_signing__2e1b3ba7.pem"),
    },
    BundleCertificate {
        vendor: "msft",
        file: "msft/Microsoft_Pluton_Root_CA_2021.pem",
        pem: include_str!("../../bundles/tpm/msft/Microsoft_Pluton_Root_CA_2021.pem"),
    },
    BundleCertificate {
        vendor: "ntc",
        file: "ntc/NTC_TPM_EK_Root_CA_02__8fac94b4.pem",
        pem: include_str!("../../bundles/tpm/ntc/NTC_TPM_EK_Root_CA_02__8fac94b4.pem"),
    },
    BundleCertificate {
        vendor: "ntc",
        file: "ntc/Nuvoton_TPM_Root_CA_2110__4aebe77a.pem",
        pem: include_str!("../../bundles/tpm/ntc/Nuvoton_TPM_Root_CA_2110__4aebe77a.pem"),
    },
    BundleCertificate {
        vendor: "ntc",
        file: "ntc/Nuvoton_TPM_Root_CA_2111__cd8185ff.pem",
        pem: include_str!("../../bundles/tpm/ntc/Nuvoton_TPM_Root_CA_2111__cd8185ff.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/GlobalSign_Trusted_Platform_Module_ECC_Root_CA__5a8c7b5e.pem",
        pem: include_str!("../../bundles/tpm/stm/GlobalSign_Trusted_Platform_Module_ECC_Root_CA__5a8c7b5e.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/GlobalSign_Trusted_Platform_Module_Root_CA__f27bf02c.pem",
        pem: include_str!("../../bundles/tpm/stm/GlobalSign_Trusted_Platform_Module_Root_CA__f27bf02c.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STM_TPM_ECC_Intermediate_CA_01__015bcfc3.pem",
        pem: include_str!("../../bundles/tpm/stm/STM_TPM_ECC_Intermediate_CA_01__015bcfc3.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STM_TPM_ECC_Root_CA_01__c541d7e5.pem",
        pem: include_str!("../../bundles/tpm/stm/STM_TPM_ECC_Root_CA_01__c541d7e5.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STM_TPM_EK_Intermediate_CA_05__870fc181.pem",
        pem: include_str!("../../bundles/tpm/stm/STM_TPM_EK_Intermediate_CA_05__870fc181.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STM_TPM_EK_Intermediate_CA_06__9343d2d7.pem",
        pem: include_str!("../../bundles/tpm/stm/STM_TPM_EK_Intermediate_CA_06__9343d2d7.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STM_TPM_EK_Root_CA__f8e37a86.pem",
        pem: include_str!("../../bundles/tpm/stm/STM_TPM_EK_Root_CA__f8e37a86.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STSAFE_RSA_Root_CA_02__c8f17994.pem",
        pem: include_str!("../../bundles/tpm/stm/STSAFE_RSA_Root_CA_02__c8f17994.pem"),
    },
    BundleCertificate {
        vendor: "stm",
        file: "stm/STSAFE_TPM_RSA_Intermediate_CA_10__60f5d4cb.pem",
        pem: include_str!("../../bundles/tpm/stm/STSAFE_TPM_RSA_Intermediate_CA_10__60f5d4cb.pem"),
    },
];

/// Every certificate of the bundle.
pub fn certificates() -> &'static [BundleCertificate] {
    CERTIFICATES
}

/// The bundle's certificates for `vendor` (all vendors when `None`) as one PEM text, e.g.
/// to upload to tetherd. Unknown vendors are an error naming the known ones.
pub fn pem(vendor: Option<&str>) -> Result<String, String> {
    if let Some(v) = vendor
        && !VENDORS.contains(&v)
    {
        return Err(format!("unknown TPM vendor \"{v}\"; the bundle has {}", VENDORS.join(", ")));
    }
    Ok(CERTIFICATES.iter().filter(|c| vendor.is_none_or(|v| v == c.vendor)).map(|c| c.pem).collect())
}

/// A trust store with the bundle's certificates for `vendor` (all when `None`).
pub fn trust_store(vendor: Option<&str>) -> Result<TrustStore, String> {
    let mut store = TrustStore::new();
    store.add_pem(&pem(vendor)?).map_err(|e: TrustError| format!("the shipped TPM bundle is unusable: {e}"))?;
    Ok(store)
}

/// SHA-256 (hex) of a bundle certificate's DER, as the manifest records it.
pub fn sha256(cert: &BundleCertificate) -> Result<String, String> {
    let block = x509_parser::pem::Pem::iter_from_buffer(cert.pem.as_bytes())
        .next()
        .ok_or_else(|| format!("{} holds no PEM block", cert.file))?
        .map_err(|e| format!("{}: {e}", cert.file))?;
    Ok(hex::encode(digest::digest(&digest::SHA256, &block.contents).as_ref()))
}
