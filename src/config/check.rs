//! `tiergate check`: a config judged by the same validation start-up and reload use, told as the lines an
//! operator (or `ExecStartPre=`, or CI) reads: every warning, then the error if any, each naming its entry.

use std::fmt;
use std::path::Path;

use super::{read, redacted, validate};

/// What `tiergate check` found in one config file.
#[derive(Debug)]
pub struct Checked {
    path: String,
    warnings: Vec<String>,
    outcome: Result<usize, String>,
}

impl Checked {
    /// True when the gateway would start on this config (warnings allowed).
    pub fn usable(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Reads and validates the config at `path` exactly as start-up does ([`super::load`]); `env` looks up
/// environment variables. The warnings found before an error are kept, so one run shows them all.
pub fn check(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Checked {
    let mut warnings = Vec::new();
    let outcome = read(path)
        .and_then(|text| validate(&text, env, &mut warnings))
        .map(|settings| settings.deployments.len())
        // Errors quote the values they refuse: blanked as reload blanks them, since a secret pasted into the
        // wrong field must not reach a terminal or the journal. The entry names stay.
        .map_err(|err| redacted(&err.to_string()));
    Checked { path: path.display().to_string(), warnings, outcome }
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        let warned = match self.warnings.len() {
            1 => "1 warning".to_owned(),
            count => format!("{count} warnings"),
        };
        match &self.outcome {
            Ok(deployments) => writeln!(f, "{}: usable, {deployments} deployments, {warned}", self.path),
            Err(error) => writeln!(f, "error: {error}\n{}: not usable, the gateway would refuse to start", self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn checked(yaml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        check(&path, &|_| None).to_string()
    }

    #[test]
    fn a_bedrock_deployment_without_aws_credentials_or_region_is_named_and_refused() {
        let text = checked(
            "model_list:\n  - model_name: claude\n    litellm_params: {model: bedrock/anthropic.claude-3-haiku-20240307-v1:0}\n\
             general_settings: {master_key: sk-bedrock-check-1}\n",
        );
        assert!(text.contains("error: config entry model_list[0].litellm_params.aws_access_key_id"), "{text}");
        assert!(text.contains("bedrock/ deployment of model claude") && text.contains("AWS_ACCESS_KEY_ID"), "{text}");
        let text = checked(
            "model_list:\n  - model_name: claude\n    litellm_params: {model: bedrock/x, aws_access_key_id: AKID1, aws_secret_access_key: s3cr3t-value-1}\n\
             general_settings: {master_key: sk-bedrock-check-1}\n",
        );
        assert!(text.contains("aws_region_name") && text.contains("AWS_REGION"), "{text}");
        assert!(!text.contains("s3cr3t-value-1"), "{text}");
    }

    #[test]
    fn warnings_found_before_an_error_are_shown_with_it() {
        let text = checked(
            "model_list:\n  - model_name: gpt-4\n    litellm_params: {model: openai/gpt-4o, api_key: os.environ/NOPE}\n\
             general_settings: {master_key: sk-1234, max_request_size_mb: 0}\n",
        );
        assert!(text.contains("warning: the master key is LiteLLM's publicly known example"), "{text}");
        assert!(
            text.contains("warning: model_list[0] (gpt-4): api_key is os.environ/NOPE but NOPE is not set"),
            "{text}"
        );
        assert!(text.contains("error: config entry general_settings.max_request_size_mb: must be"), "{text}");
        assert!(text.ends_with("not usable, the gateway would refuse to start\n"), "{text}");
    }

    #[test]
    fn an_empty_file_names_what_it_needs_through_the_blanking() {
        let text = checked("\n");
        assert!(text.contains("it needs at least model_list and general_settings.master_key"), "{text}");
    }

    #[test]
    fn a_refused_value_is_blanked_and_its_entry_named() {
        let text = checked("model_list: []\ngeneral_settings: {master_key: sk-x, max_request_size_mb: sk-secret}\n");
        assert!(text.contains("error: config entry general_settings.max_request_size_mb"), "{text}");
        assert!(!text.contains("sk-secret"), "{text}");
    }
}
