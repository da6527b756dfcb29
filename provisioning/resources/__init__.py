"""The resource catalogue: every resource of the deployment guide, one module per AWS service.

The engine orders them by their ``depends_on``; the order here is only for reading.
"""

from provisioning.resources import (
    apigateway,
    applicationautoscaling,
    autoscaling,
    cloudwatch,
    codebuild,
    dynamodb,
    ec2,
    ecr,
    ecs,
    elbv2,
    iam,
    lambda_,
    s3,
    secretsmanager,
    sns,
    sqs,
)

CATALOGUE = [
    # Storage (section 3)
    s3.AuditBucket,
    s3.RawBucket,
    dynamodb.AuditTable,
    sqs.DeadLetterQueue,
    sqs.LocalIngestQueue,
    # The gateway's secret (issue 20): API Gateway sends it, the serving hosts check it
    secretsmanager.GatewaySecret,
    # IAM (section 4)
    iam.TaskRole,
    iam.ExecutionRole,
    iam.InstanceRole,
    iam.InstanceProfile,
    iam.LambdaRole,
    iam.CodeBuildRole,
    iam.EcsServiceLinkedRole,
    # Image (section 5)
    ecr.Repository,
    codebuild.Project,
    # Audit ingestion (section 6)
    lambda_.Function,
    lambda_.S3Permission,
    s3.AuditNotification,
    # Serving (section 8)
    ec2.Network,
    ec2.LaunchTemplate,
    autoscaling.GpuGroup,
    ecs.CapacityProvider,
    ecs.Cluster,
    cloudwatch.ServiceLogGroup,
    ecs.TaskDefinition,
    elbv2.LoadBalancer,
    elbv2.TargetGroup,
    elbv2.Listener,
    ecs.Service,
    # Scaling (issue 23): the service's task count follows the serving hosts' queue
    applicationautoscaling.ScalableTarget,
    applicationautoscaling.ScalingPolicy,
    # API (section 7)
    apigateway.VpcLink,
    apigateway.RestApi,
    apigateway.Stage,
    apigateway.UsagePlan,
    apigateway.ApiKey,
    apigateway.UsagePlanKey,
    # Observability (section 11)
    sns.AlarmTopic,
    cloudwatch.ServiceHealthAlarm,
    cloudwatch.LambdaErrorsAlarm,
    cloudwatch.DlqDepthAlarm,
    cloudwatch.AuditBacklogAlarm,
    cloudwatch.AuditQuarantineAlarm,
    # Rollouts roll back on slower answers (issue 23): the service's deployment watches these
    cloudwatch.RolloutTtftAlarm,
    cloudwatch.RolloutErrorRateAlarm,
]
