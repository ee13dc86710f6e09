"""Transforms template.yaml with the SAM translator (aws-sam-translator, what CloudFormation's
AWS::Serverless-2016-10-31 transform runs) and prints the CloudFormation JSON.

Usage: python3 sam_translate.py TEMPLATE

The functions' CodeUri is replaced by an S3 location first, as `sam package` does after
`sam build`; no AWS call is made (the managed-policy loader is a stub: the template uses inline
policies only).
"""
import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    def load(self):
        return {}


def main(path):
    with open(path) as f:
        tpl = yaml_parse(f.read())
    tpl["Globals"]["Function"]["CodeUri"] = "s3://sam-artifacts/capif-security/bootstrap.zip"
    out = transform(tpl, {}, NoManagedPolicies())
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
