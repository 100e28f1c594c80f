//! The Anthropic Messages and legacy completions APIs: the request is translated to the
//! internal chat request, runs through `Engine::chat` like any chat request (admission, limits,
//! credits, routing, usage), and the answer is translated back — unless an Anthropic-format
//! provider answered a Messages request, whose answer passes through as it came.

use futures_util::StreamExt;
use serde_json::{json, Value};
use sluice_gateway::catalog::Tokenizer;
use sluice_gateway::ingress::{completions, messages, messages_events};
use sluice_gateway::{tokens, ChatReply, Wire};
use sluice_types::{ApiError, Principal};

use crate::llm::{ChatResponse, Failed, RequestCtx};
use crate::Engine;

impl Engine {
    /// `POST /v1/messages`: the reply is a Messages answer or its event stream.
    pub async fn messages(
        &self,
        who: &Principal,
        body: Value,
        beta: Option<String>,
        ctx: RequestCtx,
    ) -> Result<ChatResponse, Failed> {
        let req = messages::request(body, beta)?;
        let mut res = self.chat(who, req, ctx).await?;
        if res.wire == Wire::Anthropic {
            return Ok(res);
        }
        let model = res.model.id.clone();
        res.reply = match res.reply {
            ChatReply::Json(v) => ChatReply::Json(messages::from_chat(&v, &model)),
            ChatReply::Stream(chunks) => {
                ChatReply::Stream(messages_events(chunks, model, res.prompt_estimate))
            }
        };
        res.wire = Wire::Anthropic;
        Ok(res)
    }

    /// `POST /v1/messages/count_tokens`: the prompt's tokens by the model's tokenizer (cl100k
    /// for a name the catalog does not know, so clients that count before choosing get an
    /// answer). Counting sends nothing upstream and costs nothing.
    pub fn count_message_tokens(&self, who: &Principal, body: Value) -> Result<Value, ApiError> {
        let Value::Object(mut body) = body else {
            return Err(ApiError::new(
                sluice_types::ErrorKind::MalformedRequest,
                "The request body must be a JSON object.",
            ));
        };
        // Counting needs no output budget.
        body.remove("max_tokens");
        let chat = messages::to_chat(&body)?;
        let name = chat["model"].as_str().unwrap_or_default();
        let tokenizer = match self.gateway.catalog.get(name) {
            Some(m) => {
                if let Some(allowed) = &who.models {
                    if !allowed.iter().any(|a| m.is_named(a)) {
                        return Err(self
                            .gateway
                            .resolve(who, name, m.mode)
                            .err()
                            .unwrap_or_else(|| {
                                ApiError::internal("allowlist check disagreed with resolve")
                            }));
                    }
                }
                m.tokenizer
            }
            None => Tokenizer::Cl100k,
        };
        let msgs = chat["messages"].as_array().map_or(&[][..], |v| v);
        let n = tokens::count_chat(tokenizer, msgs, chat.get("tools"));
        Ok(json!({"input_tokens": n}))
    }

    /// `POST /v1/completions`: the reply is a text completion or its chunks.
    pub async fn completions(
        &self,
        who: &Principal,
        body: Value,
        ctx: RequestCtx,
    ) -> Result<ChatResponse, Failed> {
        let req = completions::request(body)?;
        let mut res = self.chat(who, req, ctx).await?;
        res.reply = match res.reply {
            ChatReply::Json(v) => ChatReply::Json(completions::from_chat(&v)),
            ChatReply::Stream(chunks) => {
                ChatReply::Stream(Box::pin(chunks.map(|c| c.map(|v| completions::chunk(&v)))))
            }
        };
        Ok(res)
    }
}
