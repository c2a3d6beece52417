//! The worker Lambda function: the SQS event source mapping invokes it with
//! a batch; it answers with the batch item failures.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use keyrotor_worker::lambda::handle_sqs_event;
use keyrotor_worker::setup::build_worker;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyrotor_shared::telemetry::init();
    // A bad setting fails the cold start, naming the setting.
    let settings = Arc::new(Settings::from_env()?);
    let aws = AwsContext::load(&settings.role_name).await;
    let worker = Arc::new(build_worker(settings, &aws)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        // The deadline on tokio's clock: the time left by the wall clock.
        let left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + left;
        async move {
            Ok::<SqsBatchResponse, Error>(
                handle_sqs_event(&worker, event.payload, Some(deadline)).await,
            )
        }
    }))
    .await
}
