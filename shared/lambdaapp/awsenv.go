package lambdaapp

import "strings"

// s3Endpoint is the S3 endpoint override of the SDK's environment variables
// (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL; none when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is
// true), read as the S3 client would.
func s3Endpoint(getenv func(string) string) string {
	return endpoint(getenv, "S3")
}

// endpoint is the SDK's endpoint override for the service whose env name is service.
func endpoint(getenv func(string) string, service string) string {
	if strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return ""
	}
	if e := getenv("AWS_ENDPOINT_URL_" + service); e != "" {
		return e
	}
	return getenv("AWS_ENDPOINT_URL")
}
