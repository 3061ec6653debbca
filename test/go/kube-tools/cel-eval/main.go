// cel-eval evaluates CEL expressions (a MutatingWebhookConfiguration's matchConditions) against
// objects, with the object bound to `object` as the API server binds the admitted object. Input on
// stdin: {"expressions": ["..."], "objects": [{...}, ...]}. Output: {"results": [[...], ...]}, one
// row per object and one cell per expression: true, false, or the error as a string (a compile
// error fills every cell of its expression).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
)

type input struct {
	Expressions []string         `json:"expressions"`
	Objects     []map[string]any `json:"objects"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "reading input:", err)
		os.Exit(1)
	}
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	programs := make([]cel.Program, len(in.Expressions))
	compileErrors := make([]string, len(in.Expressions))
	for i, expr := range in.Expressions {
		ast, issues := env.Compile(expr)
		if issues != nil && issues.Err() != nil {
			compileErrors[i] = "compile: " + issues.Err().Error()
			continue
		}
		if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
			compileErrors[i] = "compile: not a boolean expression: " + ast.OutputType().String()
			continue
		}
		if programs[i], err = env.Program(ast); err != nil {
			compileErrors[i] = "program: " + err.Error()
		}
	}
	results := make([][]any, len(in.Objects))
	for o, obj := range in.Objects {
		row := make([]any, len(in.Expressions))
		for i := range in.Expressions {
			if programs[i] == nil {
				row[i] = compileErrors[i]
				continue
			}
			out, _, err := programs[i].Eval(map[string]any{"object": obj})
			switch {
			case err != nil:
				row[i] = "eval: " + err.Error()
			default:
				if b, ok := out.Value().(bool); ok {
					row[i] = b
				} else {
					row[i] = fmt.Sprintf("eval: not a boolean: %v", out.Value())
				}
			}
		}
		results[o] = row
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"results": results}); err != nil {
		os.Exit(1)
	}
}
