# Scale-out query over cold history (docs/cold_storage.md, "Iceberg"): the Glue database that
# holds one Iceberg table per org, chain and dataset (the platform pool's iceberg_sync keeps
# them; it never creates or drops the database), and an Athena workgroup whose results go to
# the scratch bucket under a prefix of their own, encrypted, with a per-query scan cutoff.

resource "aws_glue_catalog_database" "iceberg" {
  name        = var.glue_database_name
  description = "Trace: committed cold partitions as Iceberg tables (org<id>_chain<id>_<dataset>)."
  tags        = var.tags
}

resource "aws_athena_workgroup" "main" {
  name          = "${var.name}-iceberg"
  description   = "Athena over Trace's Iceberg tables (engine v3 reads Iceberg)."
  force_destroy = false
  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.bytes_scanned_cutoff_per_query
    engine_version {
      selected_engine_version = "Athena engine version 3"
    }
    result_configuration {
      output_location = "s3://${var.results_bucket_name}/${var.results_prefix}"
      encryption_configuration {
        encryption_option = "SSE_S3"
      }
    }
  }
  tags = var.tags
}
