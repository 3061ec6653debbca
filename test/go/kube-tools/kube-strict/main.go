// kube-strict decodes Kubernetes objects (multi-document YAML on stdin) the way the API server
// does with strict field validation (kubectl apply --validate=strict): into the Go types of
// k8s.io/api, refusing unknown and duplicate fields. One JSON line per object on stdout:
//
//	{"kind":"Deployment","name":"x","result":"ok"}
//	{"kind":"Deployment","name":"x","result":"invalid","error":"strict decoding error: unknown field ..."}
//	{"kind":"Certificate","name":"x","result":"unregistered"}   (a CRD kind: not checked here)
//
// Exit 0 when every document was read (whatever the results), 1 on unreadable input.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

type result struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		networkingv1.AddToScheme, admissionregistrationv1.AddToScheme, rbacv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	out := json.NewEncoder(os.Stdout)
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "reading input:", err)
			os.Exit(1)
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := sigsyaml.Unmarshal(doc, &meta); err != nil {
			fmt.Fprintln(os.Stderr, "reading input:", err)
			os.Exit(1)
		}
		if meta.Kind == "" {
			continue // an empty document
		}
		r := result{Kind: meta.Kind, Name: meta.Metadata.Name, Result: "ok"}
		if _, _, err := decoder.Decode(doc, nil, nil); err != nil {
			if runtime.IsNotRegisteredError(err) {
				r.Result = "unregistered"
			} else {
				r.Result, r.Error = "invalid", err.Error()
			}
		}
		if err := out.Encode(r); err != nil {
			os.Exit(1)
		}
	}
}
