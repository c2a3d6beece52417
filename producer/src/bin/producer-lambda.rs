//! The producer Lambda function: EventBridge Scheduler invokes it with a
//! [`keyrotor_producer::lambda::ScheduleEvent`] (it enqueues the run and
//! returns the summary), and the exposed-key rules with AWS Health events
//! (an incident run); see [`keyrotor_producer::lambda::handle`].

use std::sync::Arc;

use keyrotor_producer::Producer;
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::Settings;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keyrotor_shared::telemetry::init();
    // A bad setting fails the cold start, naming the setting.
    let settings = Arc::new(Settings::from_env()?);
    let aws = AwsContext::load(&settings.role_name).await;
    let producer = Arc::new(Producer::new(settings.clone(), aws).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (producer, settings) = (producer.clone(), settings.clone());
        async move {
            keyrotor_producer::lambda::handle(&producer, &settings, event.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
