//! One module per command, plus what they share: loading settings and
//! building the executor.

pub mod breaker;
pub mod import_accounts;
pub mod init;
pub mod plan;
pub mod produce;
pub mod report;
pub mod rotate;
pub mod status;
pub mod waves;
pub mod work;

use std::sync::Arc;

use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_shared::executor::{Executor, SdkPorts};
use keyrotor_shared::store::DynamoLedger;

use crate::{Cli, CliError};

/// Validated settings, AWS access and an executor.
pub struct Context {
    /// The settings.
    pub settings: Arc<Settings>,
    /// AWS access.
    pub aws: AwsContext,
    /// The executor.
    pub executor: Arc<Executor>,
}

/// Validates the settings (failing with exit 2) and connects.
pub async fn context(cli: &Cli) -> Result<Context, CliError> {
    let settings = Arc::new(Settings::from_args(&cli.settings)?);
    let aws = AwsContext::load(&settings.role_name).await;
    let ledger = Arc::new(DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(aws.base()),
        settings.table.clone(),
    ));
    let ports = Arc::new(SdkPorts::new(aws.clone(), &settings));
    let executor = Arc::new(Executor::new(
        settings.clone(),
        ports,
        ledger,
        Executor::process_owner_id(),
    ));
    Ok(Context {
        settings,
        aws,
        executor,
    })
}
