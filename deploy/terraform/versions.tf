terraform {
  # 1.11: ephemeral resources and write-only arguments keep the database password out of
  # the plan and the state (rds.tf).
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100 is the version this configuration was validated against (write-only
      # password_wo / secret_string_wo and the ephemeral random password are recent 5.x).
      version = "~> 5.100"
    }
  }

  # Keep state remote and encrypted.
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "edvmp/terraform.tfstate"
  #   region       = "us-east-1"
  #   use_lockfile = true
  #   encrypt      = true
  # }
}
