/* Chat templates (lethe_chat_*) and `lethe chat`.
 *
 * Rendering: every family renders one fixed conversation (llama.cpp's test
 * conversation: a system message, three user turns, two assistant turns, one
 * with surrounding spaces) into exactly the text its template gives, as
 * llama.cpp's llama_chat_apply_template renders it. Detection: real
 * tokenizer.chat_template strings of published models (and the one in the
 * shared phi-3 vocabulary) land in the right family. Errors and the
 * snprintf contract. The model keeps its template at load (a synthetic GGUF
 * that has one). The CLI: two turns of `lethe chat` on stories260K equal
 * `lethe run` on the rendered conversations, and the second turn runs only
 * the tokens the first did not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "format/gguf.h"
#include "lethe.h"
#include "testutil.h"
#include "util/error.h"

static const lethe_chat_message CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV 6

#define FW "\xEF\xBD\x9C"                                     /* U+FF5C */
#define DS_EOS FW "end\xE2\x96\x81of\xE2\x96\x81sentence" FW /* <｜end▁of▁sentence｜> */

/* CONV rendered with add_generation_prompt, per family. */
static const struct {
    const char *name, *want;
} RENDERED[] = {
    {"chatml",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
     "Hi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n"
     "<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
    {"llama2",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>"
     "[INST] Another question [/INST]"},
    {"llama2-sys",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an "
     "assistant   </s>[INST] Another question [/INST]"},
    {"llama2-sys-bos",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]   I am an "
     "assistant   </s><s>[INST] Another question [/INST]"},
    {"llama2-sys-strip",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]I am an "
     "assistant</s>[INST] Another question [/INST]"},
    {"llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>"
     "\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"mistral-v1",
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an assistant   </s>"
     " [INST] Another question [/INST]"},
    {"mistral-v3",
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
     "[INST] Another question[/INST]"},
    {"mistral-v3-tekken",
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>"
     "[INST]Another question[/INST]"},
    {"mistral-v7",
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST]    "
     "I am an assistant   </s>[INST] Another question[/INST]"},
    {"mistral-v7-tekken",
     "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   "
     "I am an assistant   </s>[INST]Another question[/INST]"},
    {"phi3",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\n"
     "Who are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    {"phi4",
     "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|>"
     "<|im_start|>assistant<|im_sep|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are you<|im_end|><|im_start|>assistant"
     "<|im_sep|>   I am an assistant   <|im_end|><|im_start|>user<|im_sep|>Another question<|im_end|><|im_start|>assistant"
     "<|im_sep|>"},
    {"zephyr",
     "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi there<|endoftext|>\n"
     "<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother question"
     "<|endoftext|>\n<|assistant|>\n"},
    {"gemma",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
     "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\n"
     "Another question<end_of_turn>\n<start_of_turn>model\n"},
    {"openchat",
     "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant: Hi there"
     "<|end_of_turn|>GPT4 Correct User: Who are you<|end_of_turn|>GPT4 Correct Assistant:    I am an assistant   <|end_of_turn|>"
     "GPT4 Correct User: Another question<|end_of_turn|>GPT4 Correct Assistant:"},
    {"vicuna",
     "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an assistant   "
     "</s>\nUSER: Another question\nASSISTANT:"},
    {"vicuna-orca",
     "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are you\nASSISTANT:    I am an "
     "assistant   </s>\nUSER: Another question\nASSISTANT:"},
    {"deepseek",
     "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n### Instruction:\nWho are you\n"
     "### Response:\n   I am an assistant   \n<|EOT|>\n### Instruction:\nAnother question\n### Response:\n"},
    {"deepseek2",
     "You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there" DS_EOS "User: Who are you\n\nAssistant:    I am an "
     "assistant   " DS_EOS "User: Another question\n\nAssistant:"},
    {"deepseek3",
     "You are a helpful assistant\n\n" FW "User" FW "Hello" FW "Assistant" FW "Hi there" DS_EOS FW "User" FW "Who are you" FW
     "Assistant" FW "   I am an assistant   " DS_EOS FW "User" FW "Another question" FW "Assistant" FW},
    {"command-r",
     "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a helpful assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|>"
     "<|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>"
     "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Who are you<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>I am an "
     "assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Another question<|END_OF_TURN_TOKEN|>"
     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
};
#define N_RENDERED ((int)(sizeof RENDERED / sizeof RENDERED[0]))

/* Renders into a malloc'd string (NULL on failure, message in err). */
static char *render(const char *name, const lethe_chat_message *msgs, int n, bool gen, char *err) {
    int len = lethe_chat_apply(NULL, name, msgs, n, gen, NULL, 0, err, LETHE_ERR_MAX);
    if (len < 0) return NULL;
    char *out = malloc((size_t)len + 1);
    int again = lethe_chat_apply(NULL, name, msgs, n, gen, out, len + 1, err, LETHE_ERR_MAX);
    CHECKF(again == len, "%s: second call gave %d, first %d", name, again, len);
    return out;
}

static void test_render(void) {
    char err[LETHE_ERR_MAX];
    for (int k = 0; k < N_RENDERED; k++) {
        char *got = render(RENDERED[k].name, CONV, N_CONV, true, err);
        CHECKF(got && !strcmp(got, RENDERED[k].want), "%s renders\n  got:  %s\n  want: %s", RENDERED[k].name, got ? got : err,
               RENDERED[k].want);
        free(got);
    }
    /* every built-in family has a case above, and every case is a family */
    int n_names = 0;
    for (const char *const *n = lethe_chat_template_names(); *n; n++, n_names++) {
        bool found = false;
        for (int k = 0; k < N_RENDERED; k++) found |= !strcmp(RENDERED[k].name, *n);
        CHECKF(found, "family %s has an expected rendering", *n);
        CHECKF(lethe_chat_template_stop(NULL, *n) != NULL, "family %s has an end-of-turn text", *n);
        CHECKF(lethe_chat_template_detect_text(*n) && !strcmp(lethe_chat_template_detect_text(*n), *n),
               "a family's name is its own family: %s", *n);
    }
    CHECKF(n_names == N_RENDERED, "%d names, %d renderings", n_names, N_RENDERED);
}

/* Without the generation prompt, with developer / tool roles, and empty. */
static void test_roles(void) {
    char err[LETHE_ERR_MAX];
    const lethe_chat_message two[] = {{"developer", "Be brief"}, {"user", "Hi"}};
    const struct {
        const char *name;
        bool gen;
        const char *want;
    } cases[] = {
        /* no generation prompt: the conversation as it stands */
        {"chatml", false, "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"},
        {"llama3", false,
         "<|start_header_id|>system<|end_header_id|>\n\nBe brief<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"},
        {"gemma", false, "<start_of_turn>user\nBe brief\n\nHi<end_of_turn>\n"},
        {"gemma", true, "<start_of_turn>user\nBe brief\n\nHi<end_of_turn>\n<start_of_turn>model\n"},
        /* llama2 and mistral have no assistant header: gen adds nothing */
        {"llama2-sys", true, "[INST] <<SYS>>\nBe brief\n<</SYS>>\n\nHi [/INST]"},
        {"mistral-v7", true, "[SYSTEM_PROMPT] Be brief[/SYSTEM_PROMPT][INST] Hi[/INST]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *got = render(cases[k].name, two, 2, cases[k].gen, err);
        CHECKF(got && !strcmp(got, cases[k].want), "%s (developer, gen %d)\n  got:  %s\n  want: %s", cases[k].name, cases[k].gen,
               got ? got : err, cases[k].want);
        free(got);
    }

    /* tool results: named where the family names roles, else a user turn */
    const lethe_chat_message tool[] = {{"user", "Weather?"}, {"assistant", "call"}, {"tool", "{\"t\": 21}"}};
    const struct {
        const char *name, *want;
    } tcases[] = {
        {"chatml", "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\ncall<|im_end|>\n<|im_start|>tool\n{\"t\": 21}"
                   "<|im_end|>\n<|im_start|>assistant\n"},
        {"phi3", "<|user|>\nWeather?<|end|>\n<|assistant|>\ncall<|end|>\n<|tool|>\n{\"t\": 21}<|end|>\n<|assistant|>\n"},
        {"llama3", "<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
                   "\n\ncall<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n{\"t\": 21}<|eot_id|><|start_header_id|>"
                   "assistant<|end_header_id|>\n\n"},
        {"llama2", "[INST] Weather? [/INST]call</s>[INST] {\"t\": 21} [/INST]"},
        {"gemma", "<start_of_turn>user\nWeather?<end_of_turn>\n<start_of_turn>model\ncall<end_of_turn>\n<start_of_turn>user\n"
                  "{\"t\": 21}<end_of_turn>\n<start_of_turn>model\n"},
        {"vicuna", "USER: Weather?\nASSISTANT: call</s>\nUSER: {\"t\": 21}\nASSISTANT:"},
    };
    for (size_t k = 0; k < sizeof tcases / sizeof tcases[0]; k++) {
        char *got = render(tcases[k].name, tool, 3, true, err);
        CHECKF(got && !strcmp(got, tcases[k].want), "%s (tool)\n  got:  %s\n  want: %s", tcases[k].name, got ? got : err,
               tcases[k].want);
        free(got);
    }

    /* gemma: several system messages join (trimmed) into the next user turn,
     * not into a model turn; a system message with no later user turn is
     * dropped */
    const lethe_chat_message sys[] = {{"system", " A "}, {"assistant", "x"}, {"system", "B"}, {"user", "u"}, {"system", "C"}};
    char *got = render("gemma", sys, 5, false, err);
    CHECKF(got && !strcmp(got, "<start_of_turn>model\nx<end_of_turn>\n<start_of_turn>user\nAB\n\nu<end_of_turn>\n"), "gemma systems: %s",
           got ? got : err);
    free(got);

    /* an empty conversation is just the generation prompt */
    got = render("chatml", NULL, 0, true, err);
    CHECKF(got && !strcmp(got, "<|im_start|>assistant\n"), "empty chatml: %s", got ? got : err);
    free(got);
    got = render("llama2", NULL, 0, true, err);
    CHECKF(got && !strcmp(got, "[INST] "), "empty llama2: %s", got ? got : err);
    free(got);
}

/* Real tokenizer.chat_template strings (from the models' tokenizer_config.json). */
static void test_detect(void) {
    const struct {
        const char *model, *tmpl, *want;
    } cases[] = {
        {"teknium/OpenHermes-2.5-Mistral-7B",
         "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
         "chatml"},
        {"Qwen/Qwen2-0.5B-Instruct",
         "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
         "helpful assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
         "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
         "chatml"},
        {"mistralai/Mistral-7B-Instruct-v0.2",
         "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
         "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
         "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
         "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
         "{% endif %}{% endfor %}",
         "llama2"},
        {"TheBloke/FusionNet_34Bx2_MoE-AWQ",
         "{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n{%- if idx > 1 -%}\n{{- "
         "bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n{%- else -%}\n{{- messages[idx]['content'] + ' "
         "[/INST]' -}}\n{%- endif -%}\n{% elif messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + "
         "messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == 'assistant' -%}\n{{- ' '  + "
         "messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}",
         "llama2-sys-bos"},
        {"meta-llama/Llama-2-7b-chat-hf",
         "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
         "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for "
         "message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
         "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false "
         "%}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
         "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' "
         "}}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
         "llama2-sys-strip"},
        {"google/gemma-7b-it",
         "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in "
         "messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must "
         "alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' "
         "%}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
         "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
         "gemma"},
        {"openchat/openchat-3.5-0106",
         "{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + "
         "'<|end_of_turn|>'}}{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}",
         "openchat"},
        {"deepseek-ai/deepseek-coder-33b-instruct (excerpt)",
         "{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n"
         "        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n"
         "{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
         "{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}",
         "deepseek"},
        {"eachadea/vicuna-13b-1.1",
         "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + '\n\n' -}}{%- else "
         "-%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + "
         "message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}"
         "{{-'ASSISTANT:'-}}{%- endif -%}",
         "vicuna"},
        {"Orca-Vicuna",
         "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{-'SYSTEM: ' + message['content'] + '\n' -}}{%- "
         "else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + "
         "message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}"
         "{{-'ASSISTANT:'-}}{%- endif -%}",
         "vicuna-orca"},
        {"CohereForAI/c4ai-command-r-plus (excerpt)",
         "{% if system_message != false %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' "
         "}}{% endif %}{% for message in loop_messages %}{% set content = message['content'] %}{% if message['role'] == 'user' %}"
         "{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% elif message['role'] == "
         "'assistant' %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'  + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}",
         "command-r"},
        {"meta-llama/Meta-Llama-3-8B-Instruct",
         "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
         "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set "
         "content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
         "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
         "llama3"},
        {"microsoft/Phi-3-small-8k-instruct",
         "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' "
         "}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
         "phi3"},
        {"deepseek-ai/DeepSeek-V2-Lite-Chat",
         "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}{% for "
         "message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}{% elif "
         "message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' "
         "%}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}",
         "deepseek2"},
        {"deepseek-ai/DeepSeek-V3 (excerpt)",
         "{%- if message['role'] == 'user' %}{{'" FW "User" FW "' + message['content']}}{%- endif %}{%- if message['role'] == "
         "'assistant' %}{{'" FW "Assistant" FW "' + message['content'] + '" DS_EOS "'}}{%- endif %}",
         "deepseek3"},
        {"mistralai/Mistral-7B-Instruct-v0.2 (mistral 'v1' with a system prompt; excerpt)",
         "{%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' "
         "+ system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + "
         "message['content'] + ' [/INST]' }}\n        {%- endif %}",
         "mistral-v1"},
        {"mistralai/Mistral-Large-Instruct-2407 ('v3'; excerpt)",
         "{%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS] [\" }}\n"
         "{%- if loop.last and system_message is defined %}\n            {{- \"[INST] \" + system_message + \"\\n\\n\" + "
         "message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + "
         "\"[/INST]\" }}",
         "mistral-v3"},
        {"mistralai/Mistral-Nemo-Instruct-2407 ('v3-tekken'; excerpt)",
         "{%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \"[AVAILABLE_TOOLS][\" }}\n"
         "{%- if loop.last and system_message is defined %}\n            {{- \"[INST]\" + system_message + \"\\n\\n\" + "
         "message[\"content\"] + \"[/INST]\" }}\n        {%- else %}\n            {{- \"[INST]\" + message[\"content\"] + "
         "\"[/INST]\" }}",
         "mistral-v3-tekken"},
        {"mistralai/Mistral-Large-Instruct-2411 ('v7')",
         "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + "
         "'[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% "
         "elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, "
         "system and assistant roles are supported!') }}{% endif %}{% endfor %}",
         "mistral-v7"},
        {"microsoft/phi-4",
         "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + message['content'] "
         "+ '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + "
         "'<|im_end|><|im_start|>assistant<|im_sep|>'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + "
         "'<|im_end|>'}}{% endif %}{% endfor %}",
         "phi4"},
        {"stablelm-zephyr style",
         "{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|endoftext|>\n'}}"
         "{% endif %}{% endfor %}",
         "zephyr"},
        /* families llama.cpp knows that are not built in: not recognised */
        {"mlabonne/AlphaMonarch-7B",
         "{% for message in messages %}{{bos_token + message['role'] + '\\n' + message['content'] + eos_token + '\\n'}}{% endfor "
         "%}{% if add_generation_prompt %}{{ bos_token + 'assistant\\n' }}{% endif %}",
         NULL},
        {"THUDM/chatglm3-6b",
         "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n {{ message['content'] }}{% else "
         "%}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>"
         "{% endif %}",
         NULL},
        {"TinyLlama/TinyLlama-1.1B-Chat-v1.0 (llama.cpp: glmedge)",
         "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
         "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% "
         "if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
         NULL},
        {"empty", "", NULL},
        {"plain text", "Hello world", NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *got = lethe_chat_template_detect_text(cases[k].tmpl);
        bool ok = cases[k].want ? got && !strcmp(got, cases[k].want) : got == NULL;
        CHECKF(ok, "detect %s: got %s, want %s", cases[k].model, got ? got : "NULL", cases[k].want ? cases[k].want : "NULL");
    }
    CHECK(lethe_chat_template_detect_text(NULL) == NULL);
    CHECK(lethe_chat_template_detect(NULL) == NULL);
    CHECK(lethe_model_chat_template(NULL) == NULL);
}

static void test_stop(void) {
    const struct {
        const char *name, *stop;
    } cases[] = {
        {"chatml", "<|im_end|>"}, {"llama3", "<|eot_id|>"}, {"llama2-sys", "</s>"}, {"mistral-v3", "</s>"},
        {"phi3", "<|end|>"},      {"gemma", "<end_of_turn>"}, {"zephyr", "<|endoftext|>"}, {"deepseek", "<|EOT|>"},
        {"deepseek3", DS_EOS},    {"command-r", "<|END_OF_TURN_TOKEN|>"}, {"openchat", "<|end_of_turn|>"}, {"phi4", "<|im_end|>"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *got = lethe_chat_template_stop(NULL, cases[k].name);
        CHECKF(got && !strcmp(got, cases[k].stop), "stop of %s: %s", cases[k].name, got ? got : "NULL");
    }
    CHECK(lethe_chat_template_stop(NULL, "bogus") == NULL);
    CHECK(lethe_chat_template_stop(NULL, NULL) == NULL);
}

static void test_errors(void) {
    char err[LETHE_ERR_MAX], out[64];
    const lethe_chat_message bad_role[] = {{"user", "a"}, {"narrator", "b"}};
    const lethe_chat_message no_role[] = {{NULL, "a"}};
    const lethe_chat_message no_content[] = {{"user", NULL}};
    err[0] = 0;
    CHECK(lethe_chat_apply(NULL, "bogus", CONV, N_CONV, true, out, sizeof out, err, sizeof err) == -1);
    CHECKF(NULL != strstr(err, "unknown chat template 'bogus' (chatml, llama2,"), "unknown template message: %s", err);
    CHECK(lethe_chat_apply(NULL, "chatml", bad_role, 2, true, out, sizeof out, err, sizeof err) == -1);
    CHECKF(NULL != strstr(err, "message 1: unknown role 'narrator'"), "unknown role message: %s", err);
    CHECK(lethe_chat_apply(NULL, "chatml", no_role, 1, true, out, sizeof out, err, sizeof err) == -1);
    CHECKF(NULL != strstr(err, "message 0 has no role"), "no role: %s", err);
    CHECK(lethe_chat_apply(NULL, "chatml", no_content, 1, true, out, sizeof out, err, sizeof err) == -1);
    CHECKF(NULL != strstr(err, "message 0 has no content"), "no content: %s", err);
    CHECK(lethe_chat_apply(NULL, "chatml", NULL, 1, true, out, sizeof out, err, sizeof err) == -1);
    CHECK(lethe_chat_apply(NULL, "chatml", CONV, -1, true, out, sizeof out, err, sizeof err) == -1);
    CHECK(lethe_chat_apply(NULL, "chatml", CONV, N_CONV, true, NULL, 10, err, sizeof err) == -1);
    CHECK(lethe_chat_apply(NULL, "chatml", CONV, N_CONV, true, out, -1, err, sizeof err) == -1);
    CHECK(lethe_chat_apply(NULL, NULL, CONV, N_CONV, true, out, sizeof out, err, sizeof err) == -1);
    CHECKF(NULL != strstr(err, "no model and no template name"), "no model: %s", err);
    /* a NULL or zero-sized err buffer is fine */
    CHECK(lethe_chat_apply(NULL, "bogus", CONV, N_CONV, true, out, sizeof out, NULL, 0) == -1);
    CHECK(lethe_chat_apply(NULL, "bogus", CONV, N_CONV, true, out, sizeof out, err, 0) == -1);

    /* snprintf contract: the full length back, a truncated NUL-terminated prefix */
    const char *want = RENDERED[0].want;
    int full = (int)strlen(want);
    memset(out, 'x', sizeof out);
    CHECK(lethe_chat_apply(NULL, "chatml", CONV, N_CONV, true, out, 10, err, sizeof err) == full);
    CHECK(!memcmp(out, want, 9) && out[9] == 0 && out[10] == 'x');
    CHECK(lethe_chat_apply(NULL, "chatml", CONV, N_CONV, true, out, 1, err, sizeof err) == full && out[0] == 0);
    CHECK(lethe_chat_apply(NULL, "chatml", CONV, N_CONV, true, NULL, 0, err, sizeof err) == full);
    /* a long conversation (past the renderer's on-stack role buffer) */
    enum { LONG = 1000 };
    lethe_chat_message *many = malloc(LONG * sizeof *many);
    for (int i = 0; i < LONG; i++) many[i] = (lethe_chat_message){i % 2 ? "assistant" : "user", "x"};
    int len = lethe_chat_apply(NULL, "chatml", many, LONG, false, NULL, 0, err, sizeof err);
    CHECKF(len == LONG / 2 * (int)(strlen("<|im_start|>user\nx<|im_end|>\n") + strlen("<|im_start|>assistant\nx<|im_end|>\n")),
           "1000 messages: %d bytes", len);
    free(many);
}

/* ---- the model keeps its template -------------------------------------------- */

static void kv_str(tu_buf *b, const char *k, const char *v) { tu_str(b, k); tu_u32(b, 8); tu_str(b, v); }
static void kv_u32(tu_buf *b, const char *k, uint32_t v) { tu_str(b, k); tu_u32(b, 4); tu_u32(b, v); }
static void kv_f32(tu_buf *b, const char *k, float v) { tu_str(b, k); tu_u32(b, 6); tu_put(b, &v, 4); }

/* A tiny llama GGUF (zero weights, a 16-token SPM vocabulary) with a chat template. */
static void write_model(const char *path, const char *tmpl) {
    enum { V = 16, E = 8, FF = 8, H = 2, HD = 4 };
    struct { const char *name; int64_t ne0, ne1; } t[] = {
        {"token_embd.weight", E, V},           {"output_norm.weight", E, 1},       {"blk.0.attn_norm.weight", E, 1},
        {"blk.0.attn_q.weight", E, H * HD},    {"blk.0.attn_k.weight", E, H * HD}, {"blk.0.attn_v.weight", E, H * HD},
        {"blk.0.attn_output.weight", H * HD, E}, {"blk.0.ffn_norm.weight", E, 1},  {"blk.0.ffn_gate.weight", E, FF},
        {"blk.0.ffn_up.weight", E, FF},        {"blk.0.ffn_down.weight", FF, E},
    };
    int nt = (int)(sizeof t / sizeof t[0]);
    tu_buf b = {0};
    tu_put(&b, "GGUF", 4);
    tu_u32(&b, 3);
    tu_u64(&b, (uint64_t)nt);
    tu_u64(&b, 14);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.context_length", 64);
    kv_u32(&b, "llama.embedding_length", E);
    kv_u32(&b, "llama.block_count", 1);
    kv_u32(&b, "llama.feed_forward_length", FF);
    kv_u32(&b, "llama.attention.head_count", H);
    kv_u32(&b, "llama.attention.head_count_kv", H);
    kv_u32(&b, "llama.rope.dimension_count", HD);
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_str(&b, "tokenizer.ggml.model", "llama");
    tu_str(&b, "tokenizer.ggml.tokens"); tu_u32(&b, 9); tu_u32(&b, 8); tu_u64(&b, V);
    for (int i = 0; i < V; i++) {
        char tok[8];
        if (i == 0) strcpy(tok, "<unk>");
        else if (i == 1) strcpy(tok, "<s>");
        else if (i == 2) strcpy(tok, "</s>");
        else snprintf(tok, sizeof tok, "%c", 'a' + i - 3);
        tu_str(&b, tok);
    }
    tu_str(&b, "tokenizer.ggml.scores"); tu_u32(&b, 9); tu_u32(&b, 6); tu_u64(&b, V);
    for (int i = 0; i < V; i++) { float sc = -(float)i; tu_put(&b, &sc, 4); }
    tu_str(&b, "tokenizer.ggml.token_type"); tu_u32(&b, 9); tu_u32(&b, 5); tu_u64(&b, V);
    for (int i = 0; i < V; i++) { int32_t ty = i < 3 ? (i == 0 ? 2 : 3) : 1; tu_put(&b, &ty, 4); }
    kv_str(&b, "tokenizer.chat_template", tmpl);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        tu_str(&b, t[i].name);
        bool vec = t[i].ne1 == 1;
        tu_u32(&b, vec ? 1 : 2);
        tu_u64(&b, (uint64_t)t[i].ne0);
        if (!vec) tu_u64(&b, (uint64_t)t[i].ne1);
        tu_u32(&b, 0); /* F32 */
        tu_u64(&b, off);
        off += ((uint64_t)(t[i].ne0 * t[i].ne1 * 4) + 31) / 32 * 32;
    }
    tu_pad(&b, 32);
    for (uint64_t i = 0; i < off; i++) tu_put(&b, "", 1);
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    free(b.p);
}

static void test_model_template(void) {
    char path[128], err[LETHE_ERR_MAX];
    snprintf(path, sizeof path, "/tmp/lethe_chat_model_%d.gguf", (int)getpid());
    const char *tmpl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                       "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    write_model(path, tmpl);
    lethe_model *m = lethe_model_load(path, NULL, err, sizeof err);
    CHECKF(m != NULL, "synthetic model loads: %s", m ? "" : err);
    if (m) {
        const char *kept = lethe_model_chat_template(m);
        CHECKF(kept && !strcmp(kept, tmpl), "the model keeps tokenizer.chat_template: %s", kept ? kept : "NULL");
        const char *fam = lethe_chat_template_detect(m);
        CHECKF(fam && !strcmp(fam, "chatml"), "detected %s", fam ? fam : "NULL");
        const char *stop = lethe_chat_template_stop(m, NULL);
        CHECKF(stop && !strcmp(stop, "<|im_end|>"), "stop of the detected family: %s", stop ? stop : "NULL");
        char out[512];
        int n = lethe_chat_apply(m, NULL, CONV, N_CONV, true, out, sizeof out, err, sizeof err);
        CHECKF(n >= 0 && !strcmp(out, RENDERED[0].want), "apply with the detected template: %s", n >= 0 ? out : err);
        lethe_model_free(m);
    }
    /* a template that is none of the families: NULL, and apply says so */
    write_model(path, "{{ messages }}");
    m = lethe_model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL);
    if (m) {
        CHECK(lethe_chat_template_detect(m) == NULL && lethe_chat_template_stop(m, NULL) == NULL);
        CHECK(lethe_chat_apply(m, NULL, CONV, N_CONV, true, NULL, 0, err, sizeof err) == -1);
        CHECKF(NULL != strstr(err, "not one lethe recognises") && strstr(err, "chatml"), "unrecognised: %s", err);
        /* a name still works */
        CHECK(lethe_chat_apply(m, "chatml", CONV, N_CONV, true, NULL, 0, err, sizeof err) == (int)strlen(RENDERED[0].want));
        lethe_model_free(m);
    }
    remove(path);

    const char *stories = tu_optional_model("stories260K.gguf");
    if (stories && (m = lethe_model_load(stories, NULL, err, sizeof err))) {
        CHECK(lethe_model_chat_template(m) == NULL && lethe_chat_template_detect(m) == NULL);
        CHECK(lethe_chat_apply(m, NULL, CONV, N_CONV, true, NULL, 0, err, sizeof err) == -1);
        CHECKF(NULL != strstr(err, "has no chat template"), "no template: %s", err);
        lethe_model_free(m);
    }

    /* the shared phi-3 vocabulary (vocabulary only: read through the GGUF reader) */
    const char *phi3 = tu_optional_model("vocab/ggml-vocab-phi-3.gguf");
    if (phi3) {
        lethe_status st;
        lt_gguf_file *g = lt_gguf_open(phi3, err, &st);
        lt_gguf_str s;
        CHECKF(g && lt_gguf_get_str(g, "tokenizer.chat_template", &s), "phi-3 vocab has a chat template");
        if (g && lt_gguf_get_str(g, "tokenizer.chat_template", &s)) {
            char *t = malloc(s.len + 1);
            memcpy(t, s.data, s.len);
            t[s.len] = 0;
            const char *fam = lethe_chat_template_detect_text(t);
            CHECKF(fam && !strcmp(fam, "phi3"), "phi-3 vocab template detected as %s", fam ? fam : "NULL");
            free(t);
        }
        lt_gguf_close(g);
    }
}

/* ---- lethe chat ---------------------------------------------------------------- */

static const char *bin;
static char out_path[128], err_path[128], in_path[128];

/* Runs "lethe ARGS" with stdin from a file holding `input`; returns the exit status. */
static int run(const char *args, const char *input) {
    FILE *f = fopen(in_path, "wb");
    if (input) fputs(input, f);
    fclose(f);
    return tu_run_cli(bin, args, out_path, err_path, in_path);
}

/* `lethe run` on a prompt (the rendered conversation); its stdout. */
static char *run_prompt(const char *model, const char *prompt) {
    char ppath[160], args[1024];
    snprintf(ppath, sizeof ppath, "%s.prompt", in_path);
    FILE *f = fopen(ppath, "wb");
    fputs(prompt, f);
    fclose(f);
    snprintf(args, sizeof args, "run -m %s -f %s --special --temp 0 -n 8", model, ppath);
    int rc = run(args, NULL);
    remove(ppath);
    CHECKF(rc == 0, "lethe %s exited %d", args, rc);
    return tu_read_file(out_path, NULL);
}

/* text cut at the first stop (when given), with a trailing newline removed */
static void cut(char *text, const char *stop) {
    size_t n = strlen(text);
    if (n && text[n - 1] == '\n') text[--n] = 0;
    char *at = stop ? strstr(text, stop) : NULL;
    if (at) *at = 0;
}

/* Two turns of lethe chat (--verbose, optionally --stop) against lethe run
 * on each turn's rendered conversation, and the tokens each turn ran. */
static void two_turns(const char *model, const char *stop) {
    char args[1024];
    snprintf(args, sizeof args, "chat -m %s --chat-template chatml --temp 0 -n 8 --verbose%s%s%s", model, stop ? " --stop '" : "",
             stop ? stop : "", stop ? "'" : "");
    int rc = run(args, "Hello\nHow are you\n");
    char *chat_out = tu_read_file(out_path, NULL), *chat_err = tu_read_file(err_path, NULL);
    CHECKF(rc == 0 && chat_out && chat_err, "lethe %s exited %d: %s", args, rc, chat_err ? chat_err : "");
    if (!chat_out || !chat_err) { free(chat_out); free(chat_err); return; }

    /* the same conversation through lethe run, one turn at a time */
    char err[LETHE_ERR_MAX], p1[1024], p2[2048];
    lethe_chat_message msgs[3] = {{"user", "Hello"}, {"assistant", ""}, {"user", "How are you"}};
    lethe_chat_apply(NULL, "chatml", msgs, 1, true, p1, sizeof p1, err, sizeof err);
    char *r1 = run_prompt(model, p1);
    CHECK(r1 && strlen(r1) > 1 && r1[strlen(r1) - 1] == '\n');
    if (!r1) { free(chat_out); free(chat_err); return; }
    char *r1_full = strdup(r1);
    cut(r1, stop);
    if (stop) CHECKF(strcmp(r1, r1_full) != 0, "the first reply reaches the stop text %s: %s", stop, r1_full);
    free(r1_full);
    msgs[1].content = r1;
    lethe_chat_apply(NULL, "chatml", msgs, 3, true, p2, sizeof p2, err, sizeof err);
    char *r2 = run_prompt(model, p2);
    if (r2) cut(r2, stop);
    char want[4096];
    snprintf(want, sizeof want, "%s\n%s\n", r1, r2 ? r2 : "");
    CHECKF(!strcmp(chat_out, want), "lethe %s equals lethe run turn by turn\n  chat: %s\n  run:  %s", args, chat_out, want);

    /* turn 1 runs the whole prompt; turn 2 appends only what the sequence
     * does not hold: without a stop text it reuses all of turn 1 and the
     * reply */
    int n1 = -1, k1 = -1, a1 = -1, d1 = -1, n2 = -1, k2 = -1, a2 = -1, d2 = -1;
    const char *t1 = strstr(chat_err, "turn 1: "), *t2 = strstr(chat_err, "turn 2: ");
    CHECKF(t1 && sscanf(t1, "turn 1: %d prompt tokens, %d reused, %d appended, %d dropped", &n1, &k1, &a1, &d1) == 4,
           "turn 1 line: %s", chat_err);
    CHECKF(t2 && sscanf(t2, "turn 2: %d prompt tokens, %d reused, %d appended, %d dropped", &n2, &k2, &a2, &d2) == 4,
           "turn 2 line: %s", chat_err);
    int tok1 = 0;
    lethe_model *m = lethe_model_load(model, NULL, err, sizeof err);
    if (m) {
        tok1 = lethe_tokenize(m, p1, strlen(p1), NULL, 0, true, true);
        CHECKF(n2 == lethe_tokenize(m, p2, strlen(p2), NULL, 0, true, true), "turn 2 prompt tokens %d", n2);
        lethe_model_free(m);
    }
    CHECKF(n1 == tok1 && k1 == 0 && a1 == n1 && d1 == 0, "turn 1: %d tokens, %d reused, %d appended", n1, k1, a1);
    if (!stop)
        CHECKF(k2 > n1 && k2 + a2 == n2 && d2 == 0, "turn 2: %d tokens, %d reused (turn 1 had %d), %d appended, %d dropped", n2,
               k2, n1, a2, d2);
    else
        CHECKF(k2 >= n1 && k2 + a2 == n2 && d2 > 0, "turn 2 (stop %s): %d tokens, %d reused (turn 1 had %d), %d appended, %d dropped",
               stop, n2, k2, n1, a2, d2);
    free(r1);
    free(r2);
    free(chat_out);
    free(chat_err);
}

static void test_cli(void) {
    bin = getenv("LETHE_BIN");
    if (!bin || !tu_file_exists(bin)) { tu_skip_part("LETHE_BIN not set or missing (run through ctest)"); return; }
    const char *model = tu_optional_model("stories260K.gguf");
    if (!model) return;
    int pid = (int)getpid();
    snprintf(out_path, sizeof out_path, "/tmp/lethe_chat_out_%d", pid);
    snprintf(err_path, sizeof err_path, "/tmp/lethe_chat_err_%d", pid);
    snprintf(in_path, sizeof in_path, "/tmp/lethe_chat_in_%d", pid);
    char args[1024];

    /* usage: an unknown template is a usage error naming the families; a model
     * without a template asks for --chat-template */
    snprintf(args, sizeof args, "chat -m %s --chat-template bogus", model);
    int rc = run(args, "hi\n");
    char *e = tu_read_file(err_path, NULL);
    CHECKF(rc == 2 && e && strstr(e, "unknown chat template 'bogus' (chatml, llama2"), "bogus template: %d %s", rc, e ? e : "");
    free(e);
    snprintf(args, sizeof args, "chat -m %s", model);
    rc = run(args, "hi\n");
    e = tu_read_file(err_path, NULL);
    CHECKF(rc == 1 && e && strstr(e, "has no chat template; choose one with --chat-template NAME (chatml"), "no template: %d %s", rc,
           e ? e : "");
    free(e);

    two_turns(model, NULL);
    /* a stop text the model reaches ('?"' in its first reply): the reply
     * ends before it, and turn 2 rolls the sequence back to where the
     * conversation's new tokenisation departs from the tokens it holds */
    two_turns(model, "?\"");
    remove(out_path);
    remove(err_path);
    remove(in_path);
}

int main(void) {
    test_render();
    test_roles();
    test_detect();
    test_stop();
    test_errors();
    test_model_template();
    test_cli();
    return tu_finish("test_chat");
}
